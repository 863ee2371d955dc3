// The `Py_3_13`-style cfgs (which CPython we build for) that `src/exit.rs` needs.
fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
