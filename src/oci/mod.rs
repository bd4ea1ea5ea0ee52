//! Image assembly, urunc annotations, outputs and (issue 4) registries.
