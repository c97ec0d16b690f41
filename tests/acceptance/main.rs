//! Acceptance tests: TODO(acceptance helper)
