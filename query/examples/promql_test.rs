//! Runs PromQL test scripts through the library runner (the `ringtail promql-test` logic without
//! the server binary): `cargo run -p ringtail-query --features promqltest --example promql_test --
//! FILE…`.

fn main() {
    let files: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let options = query::promqltest::RunOptions::default();
    let mut summary = query::promqltest::Summary::default();
    for file in &files {
        match query::promqltest::run_file(file, &options) {
            Ok(results) => {
                for r in &results {
                    if let query::promqltest::Outcome::Failed(why) = &r.outcome {
                        println!("FAIL {} {}: {}", r.id, r.query, why);
                    }
                }
                summary.add(&results);
            }
            Err(e) => println!("ERROR {}: {e}", file.display()),
        }
    }
    println!("{}", summary.line());
}
