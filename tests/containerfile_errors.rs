//! Containerfile errors name the instruction and its file:line:col; no
//! input makes the parser panic.

use bunny::containerfile::{parse, Base};
use proptest::prelude::*;

fn err(text: &str) -> String {
    parse("Containerfile", text).unwrap_err().to_string()
}

#[test]
fn run_is_refused_with_its_position() {
    let e = err("FROM scratch\n# a comment\nCOPY a /a\n  RUN make\n");
    assert!(
        e.starts_with("Containerfile:4:3: error: `RUN` is not supported"),
        "{e}"
    );
    assert!(e.contains("help:"), "{e}");
}

#[test]
fn continuations_and_comments_keep_line_numbers() {
    let text = "FROM scratch\nLABEL a=1 \\\n# inside a continuation\n      b=\"two words\"\nHEALTHCHECK CMD true\n";
    let e = err(text);
    assert!(
        e.starts_with("Containerfile:5:1: error: `HEALTHCHECK`"),
        "{e}"
    );
    let ok = parse(
        "Containerfile",
        "FROM scratch\nLABEL a=1 \\\n# c\n  b=\"two words\"\n",
    )
    .unwrap();
    assert_eq!(ok.containerfile.labels["b"], "two words");
}

#[test]
fn every_error_is_reported() {
    let e = err("FROM a\nRUN x\nFROM b\nADD https://example.org/f /f\nADD x.tar.gz /\nFRM c\n");
    for want in [
        "Containerfile:2:1: error: `RUN`",
        "Containerfile:3:1: error: a second `FROM` (the first is on line 1): multi-stage builds are not supported",
        "Containerfile:4:5: error: `ADD https://example.org/f`: downloading URLs is not supported",
        "Containerfile:5:5: error: `ADD x.tar.gz`: unpacking archives",
        "Containerfile:6:1: error: unknown instruction `FRM`",
        "did you mean `FROM`?",
    ] {
        assert!(e.contains(want), "missing `{want}` in:\n{e}");
    }
}

#[test]
fn instructions_before_from_and_missing_from() {
    assert!(err("COPY a /a\nFROM scratch\n").contains("1:1: error: `COPY` before `FROM`"));
    assert!(err("ARG A=1\n").contains("no `FROM` instruction"));
}

#[test]
fn args_substitute_and_forms_parse() {
    let p = parse(
        "Containerfile",
        "ARG REG=example.org\nARG TAG\nFROM ${REG}/app:${TAG:-latest}\nENV A=1 B=\"x y\"\nENV C $A-z\nWORKDIR /srv\nWORKDIR data\nCOPY --from=other:1 /bin/x bin/\nENTRYPOINT /bin/app --flag\nCMD [\"a\", \"b c\"]\nUSER 1000:100\n",
    )
    .unwrap()
    .containerfile;
    assert_eq!(p.base, Base::Image("example.org/app:latest".into()));
    assert_eq!(
        p.env,
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "x y".into()),
            ("C".into(), "1-z".into())
        ]
    );
    assert_eq!(p.workdir.as_deref(), Some("/srv/data"));
    assert_eq!(p.copies[0].from.as_deref(), Some("other:1"));
    assert_eq!(p.copies[0].dest, "/srv/data/bin/");
    assert_eq!(
        p.entrypoint,
        Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "/bin/app --flag".into()
        ])
    );
    assert_eq!(p.cmd, Some(vec!["a".into(), "b c".into()]));
    assert_eq!(p.user.as_deref(), Some("1000:100"));
}

#[test]
fn detection_is_by_content() {
    use bunny::door::{detect_format, Format};
    assert_eq!(
        detect_format(b"#syntax=x\n\nFROM scratch\n"),
        Format::Containerfile
    );
    assert_eq!(
        detect_format(b"version: v0.1\nplatforms: {}\n"),
        Format::BunnyFile
    );
    // The BunnyFile parser says what a Containerfile is instead of guessing.
    let e = bunny::bunnyfile::parse("f", "FROM scratch\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("Containerfile"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_any_text(s in "\\PC{0,400}") {
        let _ = parse("f", &s);
    }

    #[test]
    fn never_panics_on_instruction_soup(lines in proptest::collection::vec(
        (prop::sample::select(vec!["FROM", "ARG", "COPY", "ADD", "LABEL", "ENV", "CMD",
            "ENTRYPOINT", "WORKDIR", "USER", "RUN", "from", "EXPOSE", "#", "", "\\"]),
         "[ -~\\t\"'$\\\\{}\\[\\]=:]{0,40}"), 0..20)) {
        let text: String = lines.iter().map(|(w, r)| format!("{w} {r}\n")).collect();
        if let Err(e) = parse("f", &text) {
            // Every error names where it is.
            for d in e.diagnostics() {
                prop_assert!(d.pos.line >= 1 && d.pos.col >= 1);
            }
        }
    }
}

struct NoImages;
impl bunny::pipeline::ImageSource for NoImages {
    fn layer(
        &self,
        _: &dyn bunny::frameworks::Framework,
        name: &str,
    ) -> Result<(String, std::path::PathBuf), Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("no layer {name}").into())
    }
    fn files(
        &self,
        reference: &str,
    ) -> Result<std::path::PathBuf, Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("no image {reference}").into())
    }
}

fn spec_err(text: &str) -> String {
    let parsed = parse("Containerfile", text).unwrap();
    bunny::containerfile::to_spec(&parsed.containerfile, "Containerfile", &NoImages)
        .map(|_| ())
        .expect_err("refused")
        .to_string()
}

/// `LABEL bunny.kernel=minimal` asks for bunny's minimal Linux kernel; any
/// other value, a non-Linux guest, or a kernel also named by path is an error
/// that says what to write instead.
#[test]
fn the_kernel_label_takes_minimal_for_linux_only() {
    let ok = parse(
        "Containerfile",
        "FROM scratch\nLABEL bunny.kernel=minimal\nCOPY a /a\n",
    )
    .unwrap();
    let spec =
        bunny::containerfile::to_spec(&ok.containerfile, "Containerfile", &NoImages).unwrap();
    assert!(
        matches!(spec.kernel, bunny::model::KernelSpec::Source(_)),
        "{:?}",
        spec.kernel
    );
    let e = spec_err("FROM scratch\nLABEL bunny.kernel=huge\n");
    assert!(
        e.contains("LABEL bunny.kernel=`huge` is not a kernel bunny builds for `linux`")
            && e.contains("`minimal`"),
        "{e}"
    );
    let e = spec_err(
        "FROM scratch\nLABEL bunny.kernel=minimal com.urunc.unikernel.binary=/k\nCOPY k /k\n",
    );
    assert!(e.contains("both name the kernel"), "{e}");
    let e = spec_err(
        "FROM scratch\nLABEL bunny.kernel=minimal com.urunc.unikernel.unikernelType=freebsd\n",
    );
    assert!(
        e.contains("LABEL bunny.kernel=`minimal` is not a kernel bunny builds for `freebsd`"),
        "{e}"
    );
}
