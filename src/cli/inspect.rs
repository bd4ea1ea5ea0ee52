//! `bunny inspect`: an image's urunc keys, config and layers.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::layers::store::Store;

#[derive(Debug, Args)]
#[command(
    about = "Show an image's urunc settings, config and layers",
    after_help = "Example:\n  bunny inspect hello:latest\n  bunny inspect --json hello:latest | jq .urunc"
)]
pub struct InspectArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Print one attached attestation instead (the in-toto statement, JSON):
    /// `sbom` (SPDX) or `provenance` (SLSA).
    #[arg(long, value_enum, value_name = "KIND")]
    format: Option<AttestationKind>,
    /// An image name or manifest digest in the local store.
    image: String,
}

pub fn run(args: InspectArgs, globals: &super::Globals) -> anyhow::Result<ExitCode> {
    let store = Store::open(&globals.root)
        .with_context(|| format!("opening the store at {}", globals.root.display()))?;
    let name = if args.image.contains('@') || args.image.starts_with("sha256:") {
        args.image.clone()
    } else {
        super::build::normalize_tag(&args.image)
    };
    let report = crate::oci::inspect::inspect(&store, &name)
        .with_context(|| format!("inspecting `{}`", args.image))?;
    let statements = attestations(&store, &report.manifest_digest)?;
    let text = if let Some(kind) = args.format {
        let wanted = match kind {
            AttestationKind::Sbom => crate::oci::attest::SPDX_PREDICATE,
            AttestationKind::Provenance => crate::oci::attest::SLSA_PROVENANCE_V1,
        };
        let Some((_, statement)) = statements.iter().find(|(pt, _)| pt == wanted) else {
            anyhow::bail!(
                "`{}` has no {} attestation (build it with --{})",
                args.image,
                kind.name(),
                kind.name()
            );
        };
        format!("{}\n", serde_json::to_string_pretty(statement)?)
    } else if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["attestations"] = serde_json::to_value(crate::oci::attest::summary(&statements))?;
        format!("{}\n", serde_json::to_string_pretty(&v)?)
    } else {
        let mut text = report.to_string();
        text.push_str(&attestation_text(&statements));
        text
    };
    outln!("{}", text.trim_end_matches('\n'))?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AttestationKind {
    Sbom,
    Provenance,
}

impl AttestationKind {
    fn name(self) -> &'static str {
        match self {
            AttestationKind::Sbom => "sbom",
            AttestationKind::Provenance => "provenance",
        }
    }
}

/// The statements attached to the image (none when it was built without).
fn attestations(
    store: &Store,
    manifest_digest: &str,
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    match crate::oci::attest::attached(store, manifest_digest) {
        Some(index) => Ok(crate::oci::attest::read(store, &index, manifest_digest)
            .context("reading the image's attestations")?),
        None => Ok(Vec::new()),
    }
}

fn attestation_text(statements: &[(String, serde_json::Value)]) -> String {
    let mut text = String::from("Attestations:\n");
    if statements.is_empty() {
        text.push_str("  (none)\n");
    }
    for (pt, what) in crate::oci::attest::summary(statements) {
        text.push_str(&format!("  {pt}: {what}\n"));
    }
    text
}
