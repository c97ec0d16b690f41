# cargo-image tasks. Get `just`: `pip install rust-just` (prebuilt) or `cargo install just --locked`.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Debian packages the tests check images with (real tools nobody here wrote), and the C compilers
# of cargo builds: musl-tools (musl-gcc, x86_64 musl), gcc-aarch64-linux-gnu (aarch64 linker and C);
# dpkg-dev (dpkg-scanpackages), gnupg and xz-utils make the Debian repository of the debian tests,
# apt (`apt-get download`) fetches the real packages of the debian-glibc one;
# git and inotify-tools make and watch the git checkouts of the remote-cache tests.
debian_peers := "git inotify-tools skopeo umoci runc oci-image-tool jq pigz zstd podman buildah docker-registry qemu-user-static gcc-aarch64-linux-gnu musl-tools binutils python3-venv apache2-utils time openssl python3-nacl util-linux dpkg-dev gnupg xz-utils apt"
rust_targets := "x86_64-unknown-linux-musl aarch64-unknown-linux-musl x86_64-unknown-linux-gnu"
# From PyPI: `cargo zigbuild` and the zig it runs (pinned: the versions the tests were run with).
pypi_tools := "cargo-zigbuild==0.24.1 ziglang==0.17.1"
# From PyPI: the CycloneDX JSON schema validator the SBOM tests check with (pinned likewise).
pypi_cyclonedx := "cyclonedx-python-lib[json-validation]==11.12.0"
# From PyPI: the SPDX validator the SPDX SBOM tests check with (`pyspdxtools -i FILE`).
pypi_spdx := "spdx-tools==0.8.5"

# List the recipes.
default:
    @just --list

# Build examples/hello into an OCI layout at target/image/hello (no registry, no daemon).
hello:
    cargo run --release --locked -p cargo-oci-image -- build --spec examples/hello/image.toml

# Install the peers the tests use and the rust targets (idempotent; apt-get needs root or sudo).
deps:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=()
    for p in {{debian_peers}}; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if (( ${#missing[@]} )); then
        sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        echo "installing: ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    installed=$(rustup target list --installed)
    for t in {{rust_targets}}; do
        grep -qx "$t" <<<"$installed" || rustup target add "$t"
    done
    # `cargo zigbuild` and zig (the `builder = "zigbuild"` tests), from PyPI, in a venv of their
    # own (Debian's python refuses `pip install` outside one), linked into cargo's bin directory,
    # which is on PATH wherever cargo is.
    bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    mkdir -p "$bin"
    if ! { [ -x "$bin/cargo-zigbuild" ] && "$bin/zig" version >/dev/null 2>&1; }; then
        venv="${XDG_DATA_HOME:-$HOME/.local/share}/cargo-image/zig-venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q {{pypi_tools}}
        zig=$("$venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
        ln -sf "$venv/bin/cargo-zigbuild" "$bin/cargo-zigbuild"
        ln -sf "$zig" "$bin/zig"
    fi
    # `cyclonedx-validate FILE` (the SBOM tests): cyclonedx-python-lib's strict JSON validator
    # for CycloneDX 1.6, in a venv of its own, as a script in cargo's bin directory.
    if ! "$bin/cyclonedx-validate" --check >/dev/null 2>&1; then
        venv="${XDG_DATA_HOME:-$HOME/.local/share}/cargo-image/cyclonedx-venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q '{{pypi_cyclonedx}}'
        {
            echo "#!$venv/bin/python"
            echo 'import sys'
            echo 'from cyclonedx.validation.json import JsonStrictValidator'
            echo 'from cyclonedx.schema import SchemaVersion'
            echo 'validator = JsonStrictValidator(SchemaVersion.V1_6)'
            echo 'if sys.argv[1:] == ["--check"]: sys.exit(0)'
            echo 'error = validator.validate_str(open(sys.argv[1]).read())'
            echo 'data = getattr(error, "data", None)'
            echo 'print(f"{data.json_path}: {data.message}" if data is not None else (error or "valid"))'
            echo 'sys.exit(1 if error else 0)'
        } > "$bin/cyclonedx-validate"
        chmod +x "$bin/cyclonedx-validate"
    fi
    # `pyspdxtools -i FILE` (the SPDX SBOM tests): spdx-tools' parser and SPDX 2.3 validator,
    # in a venv of its own, linked into cargo's bin directory.
    if ! "$bin/pyspdxtools" --help >/dev/null 2>&1; then
        venv="${XDG_DATA_HOME:-$HOME/.local/share}/cargo-image/spdx-venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q '{{pypi_spdx}}'
        ln -sf "$venv/bin/pyspdxtools" "$bin/pyspdxtools"
    fi

# Run every test: unit, schema, acceptance with real tools (installs the peers first).
test: deps
    cargo test --workspace --locked

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Regenerate schema/image.schema.json and schema/REFERENCE.md from the spec types.
schema:
    UPDATE_SCHEMA=1 cargo test -p cargo-oci-image --test schema

# Args: [--quick | --corpus DIR] [--runs N] [--jobs N] [--markdown FILE] [--breakdown] [--no-buildah].
# Benchmark cargo-image against tar | pigz, tar | zstd, buildah and skopeo (see BENCHMARKS.md);
# --corpus DIR measures a copy of your own tree (DIR is only read).
bench *ARGS: deps
    cargo build --release --locked -p cargo-oci-image --bin cargo-image
    cargo run --release --locked -p cargo-oci-image-acceptance --bin bench -- {{ARGS}}
