fn main() {
    std::process::exit(snap_collect::main(std::env::args_os()));
}
