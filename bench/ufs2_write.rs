//! bench/ufs2.sh's driver: writes DIR as a UFS2 image with bunny's writer,
//! exactly as a build writes a FreeBSD root (`build_block`).
//! Usage: ufs2_write DIR IMAGE

use std::path::Path;
use std::process::ExitCode;

use bunny::layers::block::{build_block, BlockOptions};
use bunny::layers::tree::Tree;
use bunny::platform::BlockFs;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, image] = args.as_slice() else {
        eprintln!("usage: ufs2_write DIR IMAGE");
        return ExitCode::from(2);
    };
    let mut tree = Tree::new();
    let result = tree
        .add_from_context(Path::new(dir), ".", "/")
        .and_then(|()| {
            build_block(
                &tree,
                BlockFs::Ufs2,
                Path::new(image),
                &BlockOptions::default(),
            )
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ufs2_write: {e}");
            ExitCode::FAILURE
        }
    }
}
