//! `ringtail adapter-config check FILE`: the metrics adapter's rule-file checker. (The adapter's
//! `serve` flags are settings, in `apiserver::settings`.)

use anyhow::Context;
use std::path::PathBuf;

/// `ringtail adapter-config …`
#[derive(clap::Subcommand, Debug)]
pub enum AdapterConfigCommand {
    /// Load a prometheus-adapter rules file and explain each rule: the series it matches now,
    /// the metric names it produces, and the query an example object would run.
    Check {
        /// The rules file.
        file: PathBuf,
        /// Store to read live series from; stop the server first [default: none, rules only].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

/// Runs an `adapter-config` subcommand; an invalid file is an error (exit status 1).
pub fn run(command: AdapterConfigCommand) -> anyhow::Result<()> {
    match command {
        AdapterConfigCommand::Check { file, data_dir } => {
            let db = match data_dir {
                Some(dir) => Some(std::sync::Arc::new(
                    tsdb::Db::open(tsdb::Options::new(&dir))
                        .with_context(|| format!("opening the store in {} (is the server running?)", dir.display()))?,
                )),
                None => None,
            };
            let mut out = std::io::stdout().lock();
            apiserver::adapter::check::explain(&file, db, apiserver::adapter::DEFAULT_METRICS_MAX_AGE, &mut out)?;
            Ok(())
        }
    }
}
