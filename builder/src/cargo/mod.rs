//! Cargo builds.
