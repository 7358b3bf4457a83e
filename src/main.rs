fn main() {
    print!("{}", ordinal::api::crds_yaml().expect("yaml"));
}
