//! Build containers: toolchain steps under an OCI runtime (issue 7).
