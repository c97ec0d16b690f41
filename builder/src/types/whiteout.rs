//! The names of OCI whiteout files: a layer's way of deleting what the layers below it hold.
//! The layer writer makes them, the stage filesystem view applies them, and the spec keeps
//! them out of image paths.

/// Prefix of a whiteout file's name: `.wh.<name>` deletes `<name>` of the lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Name of an opaque whiteout: in a directory, it hides all of the lower layers' children.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
