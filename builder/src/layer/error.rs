//! The error of the layer module: one variant per failed operation, each naming what failed.

use std::io;
use std::path::PathBuf;

use super::Compression;

/// Why a layer could not be built or written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `debian` entry's packages were not resolved before the layer was built.
    #[error("the packages of `debian` entry #{entry} (suite `{suite}`) were not resolved for this platform")]
    DebianUnresolved { entry: usize, suite: String },
    /// A `.deb` file of a `debian` entry cannot be read.
    #[error("cannot read package `{package}` ({})", path.display())]
    ReadDeb {
        package: String,
        path: PathBuf,
        #[source]
        source: crate::debian::DebError,
    },
    /// Copying a path out of another stage failed.
    #[error("cannot copy `{path}` out of stage `{stage}`: {source}")]
    CopyFromStage {
        stage: String,
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A host source (path or tar) named in the spec does not exist.
    #[error(
        "source `{path}` does not exist in the build context `{context}`; \
         source paths are relative to the context"
    )]
    FindSource {
        path: PathBuf,
        context: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host source resolves (through `..` or a symlink) to a path outside the context.
    #[error(
        "source `{path}` resolves to `{resolved}`, outside the build context `{context}`; \
         only files inside the context can be added (copy them in, or widen the context)"
    )]
    ResolveSource {
        path: PathBuf,
        resolved: PathBuf,
        context: PathBuf,
    },
    /// A top-level host `path` is cargo's or cargo-image's own (its target directory, the
    /// store, an output), which host trees never add.
    #[error(
        "source `{path}` is {what}, which host paths never add (a build changes it, so the \
         layer would never stay cached); add a binary with a `cargo` entry, or name the files \
         you need elsewhere"
    )]
    ReservedSource { path: PathBuf, what: String },
    /// A top-level host `path` is left out by the context's ignore file.
    #[error(
        "source `{path}` is left out by the ignore file `{file}`; remove the pattern that \
         matches it, add an exception (`!{path}`), or set `ignore-file` in the spec"
    )]
    IgnoredSource { path: PathBuf, file: PathBuf },
    /// The ignore file (`.dockerignore`, or the spec's `ignore-file`) cannot be read.
    #[error("cannot read the ignore file `{path}`")]
    ReadIgnoreFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line of the ignore file is not a valid pattern.
    #[error("invalid pattern `{pattern}` on line {line} of the ignore file `{path}`: {reason}")]
    ParseIgnoreFile {
        path: PathBuf,
        line: usize,
        pattern: String,
        reason: String,
    },
    /// Reading a host file, directory or link failed.
    #[error("cannot read `{path}`")]
    ReadSource {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A host source or archive member is of a kind a layer cannot hold.
    #[error(
        "`{path}` is a {kind}; a layer holds only files, directories and symlinks \
         (exclude it from the source)"
    )]
    AddSpecialFile { path: PathBuf, kind: &'static str },
    /// A host path or link target is not UTF-8.
    #[error("path `{}` is not valid UTF-8; image paths must be UTF-8 (rename or exclude it)", path.display())]
    DecodePath { path: PathBuf },
    /// An include or exclude glob of the spec does not parse.
    #[error("invalid glob `{pattern}` in layer `{layer}`")]
    ParseGlob {
        layer: String,
        pattern: String,
        #[source]
        source: ignore::Error,
    },
    /// Two different entries of one layer land at the same path.
    #[error(
        "`/{path}` is added twice in layer `{layer}`: by {first} and by {second}; \
         remove one, give them different destinations, or exclude the path from one source"
    )]
    MergeEntries {
        layer: String,
        path: String,
        first: String,
        second: String,
    },
    /// An entry whose name starts with `.wh.`: in a layer that is a whiteout, which deletes a
    /// file of the lower layers instead of adding one.
    #[error(
        "`/{path}` from {what} in layer `{layer}` has a name starting with `.wh.`, which OCI \
         runtimes read as a whiteout (it would delete `{hidden}` of the lower layers instead of \
         adding a file); rename it or exclude it, and use the layer's `remove` to delete paths"
    )]
    WhiteoutName {
        layer: String,
        path: String,
        what: String,
        hidden: String,
    },
    /// A source that produces a file or link was given the image root as its destination.
    #[error("{what} cannot be placed at the image root `/` in layer `{layer}`; give it a destination path")]
    PlaceEntry { layer: String, what: String },
    /// Reading or decompressing a tar archive to import failed.
    #[error("cannot read archive `{path}`; is it a tar file (plain, gzip or zstd)?")]
    ReadArchive {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An archive to import ends before its content does (a cut download or copy): inside a
    /// member, its header or padding, or inside the compressed stream.
    #[error(
        "archive `{path}` is truncated: it ends at byte {offset}, {detail}; \
         fetch or pack the archive again"
    )]
    TruncatedArchive {
        path: PathBuf,
        offset: u64,
        detail: String,
    },
    /// An archive to import is an empty file (an empty tar is two zero blocks, not 0 bytes).
    #[error(
        "archive `{path}` is an empty file, not a tar archive (even an empty tar has 1024 \
         bytes of end marker); fetch or pack the archive again"
    )]
    EmptyArchive { path: PathBuf },
    /// An archive member's name or link target leaves the destination through `..`.
    #[error(
        "member `{member}` of archive `{archive}` contains `..`; repack the archive without it"
    )]
    ImportMember { archive: PathBuf, member: String },
    /// An archive hard link points at no earlier regular file of the archive.
    #[error(
        "member `{member}` of archive `{archive}` is a hard link to `{target}`, \
         which is not an earlier regular file of the archive"
    )]
    ResolveHardLink {
        archive: PathBuf,
        member: String,
        target: String,
    },
    /// A path of a layer's `remove` list cannot be turned into a whiteout.
    #[error("cannot remove `{path}` in layer `{layer}`: {reason}")]
    RemovePath {
        layer: String,
        path: String,
        reason: String,
    },
    /// The orchestrator did not provide the binary of a cargo source.
    #[error(
        "no cargo build output for {what}; the cargo build must run before the layer is built"
    )]
    FindCargoOutput { what: String },
    /// A source file changed size between reading the tree and writing the layer.
    #[error(
        "`{path}` changed while the layer was written (expected {expected} bytes); build again"
    )]
    SourceChanged { path: PathBuf, expected: u64 },
    /// Writing the tar stream into the compressor or the output failed.
    #[error("cannot write the layer stream")]
    WriteLayer {
        #[source]
        source: io::Error,
    },
    /// The compressor failed.
    #[error("cannot compress the layer ({compression:?})")]
    Compress {
        compression: Compression,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Creating, syncing or renaming a blob file failed.
    #[error("cannot write layer blob `{path}`")]
    WriteBlob {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
