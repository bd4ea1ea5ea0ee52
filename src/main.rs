use std::process::ExitCode;

fn main() -> ExitCode {
    bunny::cli::main()
}
