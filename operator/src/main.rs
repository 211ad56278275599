//! `riffle-operator`: see the crate docs.

fn main() {
    print!("{}", riffle_operator::crd::crds_yaml());
}
