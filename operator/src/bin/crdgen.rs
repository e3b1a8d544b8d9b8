//! Prints the Stream CRD: `cargo run -p streammachine-operator --bin crdgen > crds/streams.streammachine.io.yaml`.

fn main() -> anyhow::Result<()> {
    print!("{}", streammachine_operator::crd::crd_yaml()?);
    Ok(())
}
