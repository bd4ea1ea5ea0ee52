//! `bunny build` end to end: BunnyFile -> plan -> rootfs -> image -> outputs.
