//! A scratch project: `project/image.toml` and whatever files a test puts beside it, in a
//! temporary directory that also holds `outside/`, a directory next to the project that no
//! spec may read. It builds, or is refused without writing anything.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use crate::cli::{build, cargo_image, CargoImage};
use crate::layout::{blob_path, first_layer_blob};
use crate::tools::{skopeo_inspect, tar_list, Run};

/// A spec in a temporary directory, and the files beside it.
pub struct Project {
    tmp: TempDir,
    /// `<tmp>/project`: the spec's directory, where the CLI runs.
    pub dir: PathBuf,
    /// `<tmp>/outside`, holding `shadow`: out of the project's reach.
    pub outside: PathBuf,
}

impl Project {
    /// A project whose `image.toml` is `spec`.
    pub fn new(spec: &str) -> Project {
        let tmp = TempDir::new().unwrap();
        let dir = tmp.path().join("project");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("shadow"), "root:secret\n").unwrap();
        std::fs::write(dir.join("image.toml"), spec).unwrap();
        Project { tmp, dir, outside }
    }

    /// The temporary directory holding `project/` and `outside/`.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Writes `content` at `path` (relative to the project), making its parents.
    pub fn file(&self, path: &str, content: impl AsRef<[u8]>) -> &Project {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// Makes `link` (relative to the project) a symbolic link to `target`.
    pub fn symlink(&self, link: &str, target: &Path) -> &Project {
        let p = self.dir.join(link);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
        self
    }

    /// Replaces the spec.
    pub fn set_spec(&self, spec: &str) {
        write_spec(&self.dir, spec);
    }

    /// `project/out`, where [`Project::cli`] builds to.
    pub fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// `cargo-image build --output out` in the project.
    pub fn cli(&self) -> CargoImage {
        cargo_image(&self.dir)
            .args(["build", "--output"])
            .arg_path(&self.out())
    }

    /// Builds and expects success.
    pub fn builds(&self) -> Run {
        self.cli().run().ok()
    }

    /// Runs `cli`, expects exit code `code`, that no output was written and that no temporary
    /// output was left behind; returns stderr.
    pub fn refuses(&self, cli: CargoImage, code: i32) -> String {
        let r = cli.run();
        assert_eq!(
            r.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            r.stdout,
            r.stderr
        );
        assert!(!self.out().exists(), "a refused build wrote its output");
        let leftovers: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with('.') && n.contains("out"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "temporary output left behind: {leftovers:?}"
        );
        r.stderr
    }

    /// Builds, expects a build error (exit code 1); returns stderr.
    pub fn fails(&self) -> String {
        self.refuses(self.cli(), 1)
    }

    /// The blob of the first layer of the image built to [`Project::out`].
    pub fn first_layer(&self) -> PathBuf {
        first_layer_blob(&self.out(), &self.out()).1
    }

    /// The paths of the image's first layer, as skopeo finds it (GNU tar's listing).
    pub fn layer_paths(&self) -> Vec<String> {
        let manifest = skopeo_inspect(&self.out(), "latest", Some("--raw"));
        let digest = manifest["layers"][0]["digest"].as_str().unwrap();
        tar_list(&blob_path(&self.out(), digest))
    }
}

/// Writes `spec` as `DIR/image.toml`, making `DIR` if needed; returns `DIR`.
pub fn write_spec(dir: &Path, spec: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("image.toml"), spec).unwrap();
    dir.to_path_buf()
}

/// Rewrites `DIR/image.toml` as `edit` returns it.
pub fn edit_spec(dir: &Path, edit: impl FnOnce(String) -> String) {
    edit_file(&dir.join("image.toml"), edit);
}

/// Rewrites the text file `path` as `edit` returns it.
pub fn edit_file(path: &Path, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, edit(text)).unwrap();
}

/// Builds `spec` (written in `ROOT/base`) into the layout `ROOT/base-layout`: the base that
/// specs in sibling directories name `oci:../base-layout:latest`. Returns the layout.
pub fn build_base_layout(root: &Path, spec: &str) -> PathBuf {
    let dir = write_spec(&root.join("base"), spec);
    let layout = root.join("base-layout");
    build(&dir, Path::new("image.toml"), &layout);
    layout
}

/// A spec named `onbase` on the base image `from`, with `extra` lines (`pull = ...`) and one
/// small layer.
pub fn spec_on_base(from: &str, extra: &str) -> String {
    format!(
        "name = \"onbase\"\nfrom = \"{from}\"\n{extra}\n[[layer]]\nname = \"a\"\n\
         [[layer.add]]\ncontent = \"x\\n\"\ndest = \"/x\"\n"
    )
}
