//! Tests of the reference grammar: distribution's own test cases, valid and invalid, and the
//! agreement between the name rules the spec uses and [`Reference::parse`].

use super::*;

/// (input, registry, repository, tag, digest hex).
type Valid<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);
/// (input, which error).
type Invalid<'a> = (&'a str, fn(&InvalidReference) -> bool);

const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

/// (input, registry, repository, tag, digest hex): the valid cases of distribution's
/// `TestReferenceParse`, `TestParseRepositoryInfo`, `TestNormalizedSplitHostname` and
/// `TestParseAnyReference`, with the normalisation `ParseNormalizedNamed` applies.
#[test]
fn valid_references() {
    let ff = Some(HEX);
    let cases: &[Valid] = &[
        (
            "test_com",
            "docker.io",
            "library/test_com",
            Some("latest"),
            None,
        ),
        (
            "test.com:tag",
            "docker.io",
            "library/test.com",
            Some("tag"),
            None,
        ),
        (
            "test.com:5000",
            "docker.io",
            "library/test.com",
            Some("5000"),
            None,
        ),
        ("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
        ("test:5000/repo", "test:5000", "repo", Some("latest"), None),
        ("test:5000/repo:tag", "test:5000", "repo", Some("tag"), None),
        (
            &format!("test:5000/repo@sha256:{HEX}"),
            "test:5000",
            "repo",
            None,
            ff,
        ),
        (
            &format!("test:5000/repo:tag@sha256:{HEX}"),
            "test:5000",
            "repo",
            Some("tag"),
            ff,
        ),
        (
            "lowercase:Uppercase",
            "docker.io",
            "library/lowercase",
            Some("Uppercase"),
            None,
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("latest"),
            None,
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
            "sub-dom1.foo.com",
            "bar/baz/quux",
            Some("some-long-tag"),
            None,
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com",
            "b.gcr.io",
            "test.example.com/my-app",
            Some("test.example.com"),
            None,
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com",
            "xn--n3h.com",
            "myimage",
            Some("xn--n3h.com"),
            None,
        ),
        (
            "foo_bar.com:8080",
            "docker.io",
            "library/foo_bar.com",
            Some("8080"),
            None,
        ),
        (
            "foo/foo_bar.com:8080",
            "docker.io",
            "foo/foo_bar.com",
            Some("8080"),
            None,
        ),
        (
            "192.168.1.1",
            "docker.io",
            "library/192.168.1.1",
            Some("latest"),
            None,
        ),
        (
            "192.168.1.1:tag",
            "docker.io",
            "library/192.168.1.1",
            Some("tag"),
            None,
        ),
        (
            "192.168.1.1:5000",
            "docker.io",
            "library/192.168.1.1",
            Some("5000"),
            None,
        ),
        (
            "192.168.1.1/repo",
            "192.168.1.1",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "192.168.1.1:5000/repo",
            "192.168.1.1:5000",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "192.168.1.1:5000/repo:5050",
            "192.168.1.1:5000",
            "repo",
            Some("5050"),
            None,
        ),
        (
            "192.168.0.1:8/debian",
            "192.168.0.1:8",
            "debian",
            Some("latest"),
            None,
        ),
        (
            "[2001:db8::1]/repo",
            "[2001:db8::1]",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag",
            "[2001:db8:1:2:3:4:5:6]",
            "repo",
            Some("tag"),
            None,
        ),
        (
            "[2001:db8::1]:5000/repo",
            "[2001:db8::1]:5000",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "[2001:db8::1]:5000/repo:tag",
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            None,
        ),
        (
            &format!("[2001:db8::1]:5000/repo@sha256:{HEX}"),
            "[2001:db8::1]:5000",
            "repo",
            None,
            ff,
        ),
        (
            &format!("[2001:db8::1]:5000/repo:tag@sha256:{HEX}"),
            "[2001:db8::1]:5000",
            "repo",
            Some("tag"),
            ff,
        ),
        (
            "[2001:db8::]:5000/repo",
            "[2001:db8::]:5000",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "[::1]:5000/repo",
            "[::1]:5000",
            "repo",
            Some("latest"),
            None,
        ),
        (
            "[fc00:1:2:3:4:5:6:7]:5000/library/debian",
            "[fc00:1:2:3:4:5:6:7]:5000",
            "library/debian",
            Some("latest"),
            None,
        ),
        // TestValidateReferenceName / TestParseRepositoryInfo
        (
            "docker/docker",
            "docker.io",
            "docker/docker",
            Some("latest"),
            None,
        ),
        (
            "library/debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "docker.io/docker/docker",
            "docker.io",
            "docker/docker",
            Some("latest"),
            None,
        ),
        (
            "docker.io/library/debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "docker.io/debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "index.docker.io/docker/docker",
            "docker.io",
            "docker/docker",
            Some("latest"),
            None,
        ),
        (
            "index.docker.io/library/debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "index.docker.io/debian",
            "docker.io",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "127.0.0.1:5000/docker/docker",
            "127.0.0.1:5000",
            "docker/docker",
            Some("latest"),
            None,
        ),
        (
            "127.0.0.1:5000/library/debian",
            "127.0.0.1:5000",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "127.0.0.1:5000/debian",
            "127.0.0.1:5000",
            "debian",
            Some("latest"),
            None,
        ),
        (
            "192.168.0.1:80",
            "docker.io",
            "library/192.168.0.1",
            Some("80"),
            None,
        ),
        (
            "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            "docker.io",
            "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev",
            Some("latest"),
            None,
        ),
        (
            "[fc00::1]:5000/docker",
            "[fc00::1]:5000",
            "docker",
            Some("latest"),
            None,
        ),
        (
            "[fc00::1]:5000/docker/docker",
            "[fc00::1]:5000",
            "docker/docker",
            Some("latest"),
            None,
        ),
        (
            "docker.io/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            "docker.io",
            "library/1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a",
            Some("latest"),
            None,
        ),
        ("Docker/docker", "Docker", "docker", Some("latest"), None),
        ("DOCKER/docker", "DOCKER", "docker", Some("latest"), None),
        ("Foo/bar", "Foo", "bar", Some("latest"), None),
        (
            "localhost/library/debian",
            "localhost",
            "library/debian",
            Some("latest"),
            None,
        ),
        (
            "localhost/debian",
            "localhost",
            "debian",
            Some("latest"),
            None,
        ),
        (
            "localhost:5000/debian:1.0",
            "localhost:5000",
            "debian",
            Some("1.0"),
            None,
        ),
        (
            "docker-rules/docker",
            "docker.io",
            "docker-rules/docker",
            Some("latest"),
            None,
        ),
        (
            "docker---rules/docker",
            "docker.io",
            "docker---rules/docker",
            Some("latest"),
            None,
        ),
        (
            "doc/docker",
            "docker.io",
            "doc/docker",
            Some("latest"),
            None,
        ),
        ("d/docker", "docker.io", "d/docker", Some("latest"), None),
        ("jess/t", "docker.io", "jess/t", Some("latest"), None),
        (
            "dock__er/docker",
            "docker.io",
            "dock__er/docker",
            Some("latest"),
            None,
        ),
        ("fooo/bar", "docker.io", "fooo/bar", Some("latest"), None),
        (
            "other/library",
            "docker.io",
            "other/library",
            Some("latest"),
            None,
        ),
        (
            "library/foo/bar",
            "docker.io",
            "library/foo/bar",
            Some("latest"),
            None,
        ),
        (
            "docker.io/library/foo/bar",
            "docker.io",
            "library/foo/bar",
            Some("latest"),
            None,
        ),
        (
            "store/foo/bar",
            "docker.io",
            "store/foo/bar",
            Some("latest"),
            None,
        ),
        (
            "ubuntu-12.04-base",
            "docker.io",
            "library/ubuntu-12.04-base",
            Some("latest"),
            None,
        ),
        (
            "test-com:8080/foo",
            "test-com:8080",
            "foo",
            Some("latest"),
            None,
        ),
        (
            "xn--n3h.com:18080/foo",
            "xn--n3h.com:18080",
            "foo",
            Some("latest"),
            None,
        ),
        ("dbcc1", "docker.io", "library/dbcc1", Some("latest"), None),
        (
            "dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            "docker.io",
            "library/dbcc1c35ac38df41fd2f5e4130b32ffdb93ebae8b3dbe638c23575912276fc9",
            Some("latest"),
            None,
        ),
        (
            &format!("busybox:latest@sha256:{HEX}"),
            "docker.io",
            "library/busybox",
            Some("latest"),
            ff,
        ),
        (
            &format!("redis@sha256:{HEX}"),
            "docker.io",
            "library/redis",
            None,
            ff,
        ),
        ("tagok:_x", "docker.io", "library/tagok", Some("_x"), None),
    ];
    for (input, registry, repository, tag, digest) in cases {
        let parsed =
            Reference::parse(input).unwrap_or_else(|e| panic!("`{input}` should parse: {e}"));
        assert_eq!(parsed.registry(), *registry, "registry of `{input}`");
        assert_eq!(parsed.repository(), *repository, "repository of `{input}`");
        assert_eq!(parsed.tag(), *tag, "tag of `{input}`");
        assert_eq!(
            parsed.digest().map(|d| d.hex().to_string()).as_deref(),
            *digest,
            "digest of `{input}`"
        );
        // The normalised form parses to itself.
        let again = Reference::parse(&parsed.to_string()).unwrap();
        assert_eq!(again, parsed, "round trip of `{input}`");
    }
}

#[test]
fn invalid_references() {
    use InvalidReference as E;
    let long_name = format!("{}a:tag", "a/".repeat(128));
    let long_tag = format!("repo:{}", "t".repeat(129));
    let cases: &[Invalid] = &[
        ("", |e| *e == E::Empty),
        (":justtag", |e| *e == E::EmptyName),
        (&format!("@sha256:{HEX}"), |e| *e == E::EmptyName),
        ("repo@sha256:ffffffffffffffffffffffffffffffffff", |e| matches!(e, E::InvalidDigest(_))),
        (&format!("validname@invaliddigest:{HEX}"), |e| matches!(e, E::UnsupportedDigest(_))),
        (&format!("repo@sha512:{HEX}{HEX}"), |e| matches!(e, E::UnsupportedDigest(_))),
        ("repo@sha256:", |e| matches!(e, E::InvalidDigest(_))),
        ("repo@", |e| matches!(e, E::InvalidDigest(_))),
        (&format!("repo@sha256:{}", HEX.to_uppercase()), |e| matches!(e, E::InvalidDigest(_))),
        ("Uppercase:tag", |e| matches!(e, E::Uppercase(_))),
        ("test:5000/Uppercase/lowercase:tag", |e| matches!(e, E::Uppercase(_))),
        ("docker/Docker", |e| matches!(e, E::Uppercase(_))),
        ("docker.io/docker/Docker", |e| matches!(e, E::Uppercase(_))),
        (&long_name, |e| matches!(e, E::NameTooLong(_))),
        ("this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255_this_is_not_a_valid_namespace_because_its_lenth_is_greater_than_255/docker", |e| matches!(e, E::NameTooLong(_))),
        (&long_tag, |e| matches!(e, E::InvalidTag(_))),
        ("repo:-tag", |e| matches!(e, E::InvalidTag(_))),
        ("repo:.tag", |e| matches!(e, E::InvalidTag(_))),
        ("repo:", |e| matches!(e, E::InvalidTag(_))),
        ("repo:ta$g", |e| matches!(e, E::InvalidTag(_))),
        ("aa/asdf$$^/aa", |e| matches!(e, E::InvalidComponent(_))),
        ("https://github.com/docker/docker", |e| matches!(e, E::InvalidRegistry(_))),
        ("-docker", |e| matches!(e, E::InvalidComponent(_))),
        ("-docker/docker", |e| matches!(e, E::InvalidComponent(_))),
        ("docker-/docker", |e| matches!(e, E::InvalidComponent(_))),
        ("-docker-/docker", |e| matches!(e, E::InvalidComponent(_))),
        ("-docker.io/docker/docker", |e| matches!(e, E::InvalidRegistry(_))),
        ("docker///docker", |e| matches!(e, E::InvalidComponent(_))),
        ("docker.io/docker///docker", |e| matches!(e, E::InvalidComponent(_))),
        ("____/____", |e| matches!(e, E::InvalidComponent(_))),
        ("_docker/_docker", |e| matches!(e, E::InvalidComponent(_))),
        ("dock..er/docker", |e| matches!(e, E::InvalidRegistry(_))),
        ("dock_.er/docker", |e| matches!(e, E::InvalidRegistry(_))),
        ("dock-.er/docker", |e| matches!(e, E::InvalidRegistry(_))),
        ("dock___er/docker", |e| matches!(e, E::InvalidComponent(_))),
        ("docker/", |e| matches!(e, E::InvalidComponent(_))),
        ("[2001:db8::1]", |e| matches!(e, E::InvalidComponent(_))),
        ("[2001:db8::1]:5000", |e| matches!(e, E::InvalidComponent(_))),
        ("[2001:db8::1]:tag", |e| matches!(e, E::InvalidComponent(_))),
        ("[fc00::1]", |e| matches!(e, E::InvalidComponent(_))),
        ("[fc00::1]:5000", |e| matches!(e, E::InvalidComponent(_))),
        ("fc00::1:5000/debian", |e| matches!(e, E::InvalidRegistry(_))),
        ("[fe80::1%eth0]:5000/repo", |e| matches!(e, E::InvalidRegistry(_))),
        ("[fe80::1%@invalidzone]:5000/repo", |e| matches!(e, E::InvalidDigest(_))),
        ("[2001:db8:3:4::192.0.2.33]:5000/debian", |e| matches!(e, E::InvalidRegistry(_))),
        ("host:port/repo", |e| matches!(e, E::InvalidRegistry(_))),
        ("1a3f5e7d9c1b3a5f7e9d1c3b5a7f9e1d3c5b7a9f1e3d5d7c9b1a3f5e7d9c1b3a", |e| *e == E::HexIdentifier),
        ("$$$", |e| matches!(e, E::InvalidComponent(_))),
        ("::", |e| matches!(e, E::InvalidComponent(_))),
        ("docker://quay.io/library/foo:bar", |e| matches!(e, E::InvalidRegistry(_))),
        (" ", |e| matches!(e, E::InvalidComponent(_))),
    ];
    for (input, expected) in cases {
        match Reference::parse(input) {
            Ok(r) => panic!("`{input}` should not parse, got `{r}`"),
            Err(e) => assert!(expected(&e), "`{input}`: unexpected error {e:?}"),
        }
    }
}

#[test]
fn a_name_the_spec_accepts_is_a_reference_the_registry_accepts() {
    for name in [
        "debian",
        "library/debian",
        "ghcr.io/acme/hello",
        "127.0.0.1:5000/x",
        "[::1]:5000/app",
        "dock__er/d---r.x_y",
    ] {
        assert_eq!(check_name(name), Ok(()), "{name}");
        assert!(Reference::parse(name).is_ok(), "{name}");
        assert!(Reference::parse(&format!("{name}:1.0")).is_ok(), "{name}");
    }
    assert_eq!(check_tag("1.2.0"), Ok(()));
    assert_eq!(check_tag("v1+build"), Err(TagError::Char('+')));
    assert_eq!(
        check_name("Acme/Hello"),
        Err(NameError::Component(
            "Hello".to_string(),
            ComponentError::Uppercase
        ))
    );
}

#[test]
fn display_is_the_full_normalised_form() {
    let cases = [
        ("alpine", "docker.io/library/alpine:latest"),
        ("alpine:3.20", "docker.io/library/alpine:3.20"),
        (
            "index.docker.io/library/alpine:3.20",
            "docker.io/library/alpine:3.20",
        ),
        ("localhost:5000/x", "localhost:5000/x:latest"),
        (
            &format!("busybox:latest@sha256:{HEX}"),
            &format!("docker.io/library/busybox:latest@sha256:{HEX}"),
        ),
        (
            &format!("ghcr.io/o/r@sha256:{HEX}"),
            &format!("ghcr.io/o/r@sha256:{HEX}"),
        ),
    ];
    for (input, shown) in cases {
        assert_eq!(Reference::parse(input).unwrap().to_string(), shown);
    }
}

#[test]
fn api_host_and_loopback() {
    let hub = Reference::parse("alpine").unwrap();
    assert_eq!(hub.api_host(), "registry-1.docker.io");
    assert!(!hub.is_loopback());
    let local = Reference::parse("127.0.0.1:5000/x").unwrap();
    assert_eq!(local.api_host(), "127.0.0.1:5000");
    assert!(local.is_loopback());
    assert!(Reference::parse("localhost/x").unwrap().is_loopback());
    assert!(Reference::parse("[::1]:5000/x").unwrap().is_loopback());
    assert!(!Reference::parse("[fc00::1]:5000/x").unwrap().is_loopback());
    assert!(!Reference::parse("example.com:5000/x")
        .unwrap()
        .is_loopback());
}
