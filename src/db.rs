//! PostgreSQL schema and error classes.
//!
//! The migrations in `migrations/` are embedded in the binary, so every subcommand that needs the
//! database brings it to the current schema itself.
//!
//! [`is_record_fault`] decides what a failed query means for the record that caused it. Every
//! lookup the processor and the fetch stage make is parameterised, so the only way a record's
//! content can make PostgreSQL refuse is through the values bound: a data exception (class 22:
//! invalid UTF-8, a NUL byte, a string too long), an integrity constraint (class 23), or a
//! program limit (class 54: an index row too large). Those are the record's fault, and it is
//! dead-lettered. Everything else (connection failures, timeouts, a database shutting down,
//! missing tables, permissions) says nothing about the record: it is an outage, waited out with
//! the record kept.

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// SQLSTATE classes caused by the values a query was given (PostgreSQL, Appendix A).
const RECORD_FAULT_CLASSES: &[&str] = &["22", "23", "54"];

/// Whether `error` was caused by the values bound to the query (see the module docs).
pub fn is_record_fault(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            database.code().is_some_and(|code| RECORD_FAULT_CLASSES.iter().any(|class| code.starts_with(class)))
        }
        // A value that could not be encoded for the wire.
        sqlx::Error::Encode(_) => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_errors_are_outages() {
        assert!(!is_record_fault(&sqlx::Error::PoolTimedOut));
        assert!(!is_record_fault(&sqlx::Error::Io(std::io::Error::other("connection reset"))));
        assert!(is_record_fault(&sqlx::Error::Encode("bad".into())));
    }
}
