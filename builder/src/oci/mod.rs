//! The OCI image model and sinks.
