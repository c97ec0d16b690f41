//! Test support: TODO(acceptance helper)
