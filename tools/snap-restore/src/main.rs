fn main() {
    std::process::exit(snap_restore::main(std::env::args_os()));
}
