//! `.deb` files: an `ar` archive of `debian-binary` (`2.0`), `control.tar.*` (the package's
//! control file, `md5sums`, maintainer scripts) and `data.tar.*` (the files it installs).
//!
//! [`open`] reads the control member into memory (it is small: at most [`MAX_CONTROL_BYTES`]
//! once decompressed, so a compression bomb cannot take the machine's memory) and decompresses
//! the data member (xz, zstd, gzip or none, told by its name as dpkg tells it) into a temporary
//! plain tar, which the layer module imports like any `tar` source: by offset, without holding
//! files in memory. Maintainer scripts are read past and never run.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;

use super::deb822::{self, Paragraph};

/// The most the control member (`control.tar`, decompressed) may hold. Debian's largest
/// control members (the `md5sums` of packages with 100,000 files) are about 10 MiB.
pub const MAX_CONTROL_BYTES: usize = 128 << 20;

/// What went wrong reading a `.deb` (the caller names the file).
#[derive(Debug, thiserror::Error)]
pub enum DebError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is not a Debian binary package: {0}")]
    Format(String),
    /// The control member decompresses to more than [`MAX_CONTROL_BYTES`].
    #[error(
        "its `{member}` member holds more than {} MiB decompressed (Debian's largest hold about \
         10 MiB)",
        MAX_CONTROL_BYTES >> 20
    )]
    ControlTooLarge { member: String },
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
            let mut plain = Capped::default();
            let decompressed = decompress(compression, &mut entry, &mut plain);
            if plain.over {
                return Err(DebError::ControlTooLarge { member: name });
            }
            decompressed?;
            control = Some(read_control(&plain.bytes)?);
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

/// Memory for the control member that refuses to grow past [`MAX_CONTROL_BYTES`] (a write
/// that would fails, and `over` says why).
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    over: bool,
}

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_CONTROL_BYTES {
            self.over = true;
            return Err(io::Error::other("the control member is too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.deb` (ar archive) of `debian-binary`, a plain `control.tar` of `control_files` and
    /// a plain `data.tar` of one file.
    fn deb(dir: &Path, control_files: Vec<(&str, Box<dyn Read>, u64)>) -> std::path::PathBuf {
        let path = dir.join("p.deb");
        let mut ar = ar::Builder::new(File::create(&path).unwrap());
        let mut add = |name: &str, bytes: &[u8]| {
            let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
            ar.append(&header, bytes).unwrap();
        };
        add("debian-binary", b"2.0\n");
        let mut control = tar::Builder::new(Vec::new());
        for (name, content, size) in control_files {
            let mut header = tar::Header::new_ustar();
            header.set_size(size);
            header.set_mode(0o644);
            control
                .append_data(&mut header, name, content.take(size))
                .unwrap();
        }
        add("control.tar", &control.into_inner().unwrap());
        let mut data = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(3);
        header.set_mode(0o644);
        data.append_data(&mut header, "./usr/share/p", &b"abc"[..])
            .unwrap();
        add("data.tar", &data.into_inner().unwrap());
        path
    }

    fn control() -> (&'static str, Box<dyn Read>, u64) {
        let text = b"Package: p\nVersion: 1\n";
        ("./control", Box::new(&text[..]), text.len() as u64)
    }

    fn md5sums(size: usize) -> (&'static str, Box<dyn Read>, u64) {
        ("./md5sums", Box::new(io::repeat(b'0')), size as u64)
    }

    #[test]
    fn a_control_member_larger_than_the_cap_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let within = deb(
            dir.path(),
            vec![control(), md5sums(MAX_CONTROL_BYTES - (64 << 10))],
        );
        let opened = open(&within, dir.path()).unwrap();
        assert_eq!(opened.control.get("Package"), Some("p"));
        assert_eq!(
            opened.md5sums.map(|m| m.len()),
            Some(MAX_CONTROL_BYTES - (64 << 10))
        );

        let past = deb(dir.path(), vec![control(), md5sums(MAX_CONTROL_BYTES)]);
        let err = open(&past, dir.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            "its `control.tar` member holds more than 128 MiB decompressed (Debian's largest hold \
             about 10 MiB)"
        );
    }
}
