fn main() -> std::process::ExitCode {
    stackwright::cli::main()
}
