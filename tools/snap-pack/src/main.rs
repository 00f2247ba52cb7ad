fn main() {
    std::process::exit(snap_pack::main(std::env::args_os()));
}
