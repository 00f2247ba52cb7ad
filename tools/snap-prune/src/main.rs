fn main() {
    std::process::exit(snap_prune::main(std::env::args_os()));
}
