//! Build-time facts the binary reports about itself.
//!
//! - `sqlx::migrate!` embeds `migrations/` at compile time: rebuild when a migration is added.
//! - `BIOMETRIC_BRIDGE_GIT_SHA` for `biometric_bridge_build_info`: the `GIT_SHA` variable when
//!   set (the Docker build has no `.git`), else `git rev-parse`, else `unknown`.
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=GIT_SHA");
    // The commit moves when HEAD or the branch it points at does.
    println!("cargo:rerun-if-changed=.git/HEAD");
    if let Ok(head) = std::fs::read_to_string(".git/HEAD")
        && let Some(reference) = head.trim().strip_prefix("ref: ")
    {
        println!("cargo:rerun-if-changed=.git/{reference}");
        println!("cargo:rerun-if-changed=.git/packed-refs");
    }
    let from_git = || {
        let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let sha = std::env::var("GIT_SHA").ok().filter(|sha| !sha.is_empty()).or_else(from_git).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BIOMETRIC_BRIDGE_GIT_SHA={sha}");
}
