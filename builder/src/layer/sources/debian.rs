//! `debian` entries: resolved Debian packages unpacked at `/`, with dpkg's database.
//!
//! The packages were resolved and their `.deb` files put into the store before planning
//! ([`crate::debian`]); [`SourceContext::debian`](crate::layer::SourceContext) maps each entry
//! to them. Each `.deb`'s `data.tar` is decompressed into a temporary plain tar and imported
//! with the `tar` machinery (path safety, kept modes, the spec's owner, no mtimes), package by
//! package in name order; the directories packages share merge, a file two packages ship is a
//! conflict naming the entry.
//!
//! dpkg's database is written after every entry of the layer is read, so the layer has one
//! `/var/lib/dpkg/status` (a stanza per package in name order: the package's own `control`
//! paragraph with `Status: install ok installed` after `Package`, as dpkg writes it) and, per
//! package, `/var/lib/dpkg/info/NAME.list` (every path it installed, `/.` first) and
//! `NAME.md5sums` (when the package ships one); a `Multi-Arch: same` package's files are named
//! `NAME:ARCH.*`, as dpkg names them in the database format `info/format` declares (1). `dpkg-query --admindir=ROOT/var/lib/dpkg` then lists
//! what the layer installed.
//!
//! # The CA bundle without `postinst`
//! No maintainer script runs, but `ca-certificates` is useless without what its `postinst`
//! makes: `update-ca-certificates` concatenates the certificates the package ships into
//! `/etc/ssl/certs/ca-certificates.crt`, the file OpenSSL-based clients, Go, curl and
//! rustls-native-certs read. So when a layer installs `ca-certificates`, it also gets that
//! bundle, made as `update-ca-certificates` makes it on a fresh install (every `*.crt` selected,
//! which is what `postinst` does unless an administrator deselects some): each regular file
//! `usr/share/ca-certificates/**/*.crt` of the layer, then each
//! `usr/local/share/ca-certificates/**/*.crt` (a site's own CAs added by another entry of the
//! layer), in byte order of their paths (the order `sort` gives in the C locale), each followed
//! by a newline when it lacks one (as its `sed -e '$a\'` does), mode 0644, owned as the entry
//! that installed the package. It is derived from the packages' content alone, so the layer's
//! key (the packages' digests and [`INSTALL_RECIPE`]) covers it. A layer that already has a
//! file at that path keeps its own. The per-certificate `NAME.pem` links and OpenSSL's hash
//! links (`openssl rehash`, needed only by lookups in a directory, `CApath`) are not made:
//! they need each certificate's subject hashed the way OpenSSL canonicalises names, and the
//! bundle is what clients read by default.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::tar_import::{add_members, MemberFilter};
use super::{Builder, DIR_MODE, FILE_MODE};
use crate::debian::deb822::Paragraph;
use crate::layer::tree::{EntryKind, FileSource, ImportedArchive};
use crate::layer::Error;
use crate::spec::{DebianSource, EntrySpec};

/// Where dpkg keeps its database.
const ADMINDIR: &str = "var/lib/dpkg";

/// What a layer's key says of how `debian` entries are installed: a change in what is
/// derived from the packages (dpkg's database, the CA bundle) must change every key.
pub(crate) const INSTALL_RECIPE: &str =
    "debian-install/2: data.tar, dpkg database (format 1), ca-certificates bundle";

/// The package whose `postinst` makes the CA bundle (see the module docs).
const CA_PACKAGE: &str = "ca-certificates";
/// Where the bundle takes certificates from, in this order: `update-ca-certificates`'
/// `CERTSDIR` (the package's) and `LOCALCERTSDIR` (a site's own).
const CA_DIRS: [&str; 2] = [
    "usr/share/ca-certificates/",
    "usr/local/share/ca-certificates/",
];
/// The bundle, where Debian's `update-ca-certificates` writes it.
const CA_BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

/// What dpkg's database says of one installed package.
pub(crate) struct Installed {
    /// The `status` stanza.
    status: Paragraph,
    /// The name of its `info/` files (`NAME` or `NAME:ARCH`).
    info_name: String,
    /// `info/NAME.list`.
    list: String,
    /// `info/NAME.md5sums`.
    md5sums: Option<String>,
    /// The entry that installed it.
    entry: usize,
}

/// Unpacks the packages resolved for `source` and records them for dpkg's database.
pub(super) fn add(
    b: &mut Builder<'_>,
    index: usize,
    spec: &EntrySpec,
    source: &DebianSource,
) -> Result<(), Error> {
    let packages = b
        .ctx
        .debian
        .and_then(|d| d.get(source))
        .ok_or_else(|| Error::DebianUnresolved {
            entry: index + 1,
            suite: source.suite.clone(),
        })?
        .clone();
    for (package, deb_path) in packages.iter() {
        let read_err = |source| Error::ReadDeb {
            package: format!("{} {}", package.name, package.version),
            path: deb_path.clone(),
            source,
        };
        let scratch = b.ctx.scratch_dir().map_err(|e| read_err(e.into()))?;
        let deb = crate::debian::deb::open(deb_path, &scratch).map_err(read_err)?;
        let data_path = deb.data.to_path_buf();
        let archive = Arc::new(ImportedArchive::new(
            data_path,
            PathBuf::from(format!("{}_{}.deb", package.name, package.version)),
            Some(deb.data),
        ));
        let mut names = Vec::new();
        add_members(
            b,
            index,
            spec,
            archive,
            true,
            &MemberFilter::all(),
            Some(&mut names),
        )?;
        let mut list = String::from("/.\n");
        for name in names.iter().filter(|n| !n.is_empty()) {
            list.push('/');
            list.push_str(name);
            list.push('\n');
        }
        let mut status = deb.control.clone();
        let at = status
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case("Package"))
            .map_or(0, |i| i + 1);
        status
            .fields
            .retain(|(n, _)| !n.eq_ignore_ascii_case("Status"));
        status
            .fields
            .insert(at, ("Status".into(), "install ok installed".into()));
        let same = status
            .get("Multi-Arch")
            .is_some_and(|m| m.eq_ignore_ascii_case("same"));
        let info_name = if same {
            format!("{}:{}", package.name, package.architecture)
        } else {
            package.name.clone()
        };
        b.dpkg.insert(
            info_name.clone(),
            Installed {
                status,
                info_name,
                list,
                md5sums: deb.md5sums,
                entry: index,
            },
        );
    }
    Ok(())
}

/// Writes dpkg's database for the packages the layer's `debian` entries installed, and the CA
/// bundle when they include `ca-certificates`.
pub(super) fn write_database(
    b: &mut Builder<'_>,
    installed: BTreeMap<String, Installed>,
) -> Result<(), Error> {
    let Some(first) = installed.values().next() else {
        return Ok(());
    };
    let entry = first.entry;
    let spec = b.layer.entries[entry].clone();
    write_ca_bundle(b, &installed)?;
    for dir in [
        ADMINDIR.to_string(),
        format!("{ADMINDIR}/info"),
        format!("{ADMINDIR}/updates"),
    ] {
        if !b
            .tree
            .get(&dir)
            .is_some_and(|e| matches!(e.kind, EntryKind::Dir))
        {
            b.insert(entry, &dir, &spec, EntryKind::Dir, DIR_MODE)?;
        }
    }
    let mut status = String::new();
    let mut files: Vec<(String, String)> = Vec::new();
    // Stanzas in package-name order (the map is keyed by info name, which starts with it).
    for package in installed.values() {
        if !status.is_empty() {
            status.push('\n');
        }
        status.push_str(&package.status.to_text());
        files.push((
            format!("{ADMINDIR}/info/{}.list", package.info_name),
            package.list.clone(),
        ));
        if let Some(md5sums) = &package.md5sums {
            files.push((
                format!("{ADMINDIR}/info/{}.md5sums", package.info_name),
                md5sums.clone(),
            ));
        }
    }
    files.push((format!("{ADMINDIR}/status"), status));
    // The database's format: 1 names a `Multi-Arch: same` package's files `NAME:ARCH.*`.
    files.push((format!("{ADMINDIR}/info/format"), "1\n".to_string()));
    for (path, text) in files {
        let bytes: Arc<[u8]> = Arc::from(text.into_bytes().into_boxed_slice());
        let size = bytes.len() as u64;
        b.insert(
            entry,
            &path,
            &spec,
            EntryKind::File {
                source: FileSource::Inline(bytes),
                size,
            },
            FILE_MODE,
        )?;
    }
    Ok(())
}

/// Writes the CA bundle when the layer installs `ca-certificates` (see the module docs).
fn write_ca_bundle(
    b: &mut Builder<'_>,
    installed: &BTreeMap<String, Installed>,
) -> Result<(), Error> {
    let Some(ca) = installed.get(CA_PACKAGE) else {
        return Ok(());
    };
    if b.tree.get(CA_BUNDLE).is_some() {
        return Ok(());
    }
    let mut bundle = Vec::new();
    for dir in CA_DIRS {
        for (path, entry) in b.tree.iter() {
            if !path.starts_with(dir) || !path.ends_with(".crt") {
                continue;
            }
            let EntryKind::File { source, size } = &entry.kind else {
                continue;
            };
            let pem = source.read(*size)?;
            bundle.extend_from_slice(&pem);
            if pem.last().is_some_and(|&c| c != b'\n') {
                bundle.push(b'\n');
            }
        }
    }
    let spec = b.layer.entries[ca.entry].clone();
    let size = bundle.len() as u64;
    b.insert(
        ca.entry,
        CA_BUNDLE,
        &spec,
        EntryKind::File {
            source: FileSource::Inline(Arc::from(bundle.into_boxed_slice())),
            size,
        },
        FILE_MODE,
    )
}
