fn main() {
    std::process::exit(snap_backup::main(std::env::args_os()));
}
