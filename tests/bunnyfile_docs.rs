//! docs/bunnyfile.md stays true: its support table matches the frameworks'
//! support tables, and its complete YAML examples parse.

use bunny::bunnyfile;
use bunny::frameworks::{self, Framework};

const DOC: &str = include_str!("../docs/bunnyfile.md");

fn names<T: std::fmt::Display>(values: &[T]) -> String {
    values
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(name: &str, f: &dyn Framework) -> String {
    let s = f.support();
    format!(
        "| {name} | {} | {} | {} | {} | {} |",
        names(s.monitors),
        names(s.architectures),
        names(s.rootfs_types),
        f.default_rootfs_type(),
        f.app_rootfs_type()
    )
}

#[test]
fn support_table_matches_the_frameworks() {
    let start = DOC.find("<!-- support-table:start -->").unwrap();
    let end = DOC.find("<!-- support-table:end -->").unwrap();
    let table: Vec<&str> = DOC[start..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| framework"))
        .collect();
    let mut expected: Vec<String> = frameworks::known()
        .iter()
        .map(|f| row(f.name(), *f))
        .collect();
    let generic = frameworks::resolve("some-other-framework");
    expected.push(row("any other name", generic.as_ref()));
    assert_eq!(table, expected, "update the table in docs/bunnyfile.md");
}

#[test]
fn complete_yaml_examples_parse() {
    let mut checked = 0;
    let mut rest = DOC;
    while let Some(start) = rest.find("```yaml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").unwrap();
        let example = &body[..end];
        if example.contains("version:") {
            if let Err(e) = bunnyfile::parse("docs/bunnyfile.md example", example) {
                panic!("example does not parse:\n{example}\n{e}");
            }
            checked += 1;
        }
        rest = &body[end + 3..];
    }
    assert!(checked >= 4, "only {checked} examples found");
}
