//! `.deb` files: an `ar` archive of `debian-binary` (`2.0`), `control.tar.*` (the package's
//! control file, `md5sums`, maintainer scripts) and `data.tar.*` (the files it installs).
//!
//! [`open`] reads the control member into memory (it is small) and decompresses the data
//! member (xz, zstd, gzip or none, told by its name as dpkg tells it) into a temporary plain
//! tar, which the layer module imports like any `tar` source: by offset, without holding files
//! in memory. Maintainer scripts are read past and never run.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::deb822::{self, Paragraph};

/// What went wrong reading a `.deb` (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is not a Debian binary package: {0}")]
    Format(String),
}

/// A package file opened for installation.
#[derive(Debug)]
pub struct Deb {
    /// The package's own `control` paragraph.
    pub control: Paragraph,
    /// The `md5sums` control file, when the package has one.
    pub md5sums: Option<String>,
    /// The `conffiles` control file, when the package has one.
    pub conffiles: Option<String>,
    /// `data.tar` decompressed (deleted when dropped).
    pub data: tempfile::TempPath,
}

/// Opens the `.deb` at `path`, its data decompressed into a temporary file in `temp_dir`.
pub fn open(path: &Path, temp_dir: &Path) -> Result<Deb, DebError> {
    let mut archive = ar::Archive::new(BufReader::new(File::open(path)?));
    let mut control = None;
    let mut data = None;
    let mut saw_version = false;
    while let Some(entry) = archive.next_entry() {
        let mut entry = entry.map_err(|e| DebError::Format(format!("bad ar member ({e})")))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let name = name.trim_end_matches('/').to_string();
        if name == "debian-binary" {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            if !text.starts_with("2.") {
                return Err(DebError::Format(format!(
                    "format version {:?}, not 2.x",
                    text.trim()
                )));
            }
            saw_version = true;
        } else if let Some(compression) = name.strip_prefix("control.tar") {
            let mut plain = Vec::new();
            decompress(compression, &mut entry, &mut plain)?;
            control = Some(read_control(&plain)?);
        } else if let Some(compression) = name.strip_prefix("data.tar") {
            let mut temp = tempfile::Builder::new()
                .prefix(".cargo-image-deb-")
                .suffix(".tar")
                .tempfile_in(temp_dir)?;
            {
                let mut out = BufWriter::new(temp.as_file_mut());
                decompress(compression, &mut entry, &mut out)?;
                out.flush()?;
            }
            data = Some(temp.into_temp_path());
        }
    }
    if !saw_version {
        return Err(DebError::Format("no `debian-binary` member".into()));
    }
    let (control, md5sums, conffiles) =
        control.ok_or_else(|| DebError::Format("no `control.tar` member".into()))?;
    let data = data.ok_or_else(|| DebError::Format("no `data.tar` member".into()))?;
    Ok(Deb {
        control,
        md5sums,
        conffiles,
        data,
    })
}

/// Decompresses a member whose name ends in `compression` (`""`, `.gz`, `.xz`, `.zst`).
fn decompress(
    compression: &str,
    input: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), DebError> {
    match compression {
        "" => {
            io::copy(input, out)?;
        }
        ".xz" => {
            lzma_rs::xz_decompress(&mut BufReader::new(input), &mut &mut *out)
                .map_err(|e| DebError::Format(format!("bad xz stream ({e})")))?;
        }
        ".gz" | ".zst" => {
            let (_, mut decoder) = crate::tarball::decompress(BufReader::new(input))?;
            io::copy(&mut decoder, out)?;
        }
        other => {
            return Err(DebError::Format(format!(
                "member compressed as `{other}`, which is not supported (xz, zstd, gzip or none)"
            )))
        }
    }
    Ok(())
}

type Control = (Paragraph, Option<String>, Option<String>);

/// The `control`, `md5sums` and `conffiles` files of a plain control tar.
fn read_control(tar_bytes: &[u8]) -> Result<Control, DebError> {
    let mut control = None;
    let mut md5sums = None;
    let mut conffiles = None;
    let mut tar = tar::Archive::new(tar_bytes);
    for member in tar.entries()? {
        let mut member = member?;
        let path = member.path()?.to_string_lossy().into_owned();
        let slot = match path.trim_start_matches("./") {
            "control" => &mut control,
            "md5sums" => &mut md5sums,
            "conffiles" => &mut conffiles,
            _ => continue,
        };
        let mut text = String::new();
        member
            .read_to_string(&mut text)
            .map_err(|_| DebError::Format(format!("control file `{path}` is not UTF-8")))?;
        *slot = Some(text);
    }
    let text = control.ok_or_else(|| DebError::Format("no `control` file".into()))?;
    let paragraph = deb822::parse(&text)
        .map_err(|line| DebError::Format(format!("`control` line {line} is not a field")))?
        .into_iter()
        .next()
        .ok_or_else(|| DebError::Format("empty `control` file".into()))?;
    Ok((paragraph, md5sums, conffiles))
}
