fn main() {
    std::process::exit(snap_push::main(std::env::args_os()));
}
