//! PostgreSQL schema: the migrations in `migrations/`, embedded in the binary so every
//! subcommand that needs the database brings it to the current schema itself.

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
