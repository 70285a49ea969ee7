//! Integration tests against the real stack (`scripts/stack up`; `scripts/test` does it).
//! One test binary: faster to build than one per file.

mod crash;
mod helpers;
mod ingress_support;
mod terra_end_to_end;
