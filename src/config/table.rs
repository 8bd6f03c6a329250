//! The configuration reference table in `docs/configuration.md`, generated
//! from the flag definitions so the two cannot drift apart.

use clap::CommandFactory;

use super::Cli;

/// A Markdown table of every `rill serve` setting: file key, flag,
/// environment variable, default, meaning.
pub fn markdown() -> String {
    let cmd = Cli::command();
    let serve = cmd
        .find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| cmd.clone());
    let mut out = String::from(
        "| file key | flag | environment | default | meaning |\n|---|---|---|---|---|\n",
    );
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let default = arg
            .get_default_values()
            .iter()
            .map(|v| format!("`{}`", v.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(", ");
        let help = arg
            .get_help()
            .map(|h| h.to_string().replace('\n', " ").replace('|', "\\|"))
            .unwrap_or_default();
        let key = if long == "config" {
            "—".to_owned()
        } else {
            format!("`{long}`")
        };
        out.push_str(&format!(
            "| {key} | `--{long}` | {env} | {default} | {help} |\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    const BEGIN: &str = "<!-- settings table: generated from src/config; do not edit -->\n";
    const END: &str = "<!-- end of settings table -->";

    /// Fails when docs/configuration.md's table differs from the flags.
    /// `RILL_UPDATE_DOCS=1 cargo test --lib config::table` rewrites it.
    #[test]
    fn docs_table_matches_the_flags() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
        let doc = std::fs::read_to_string(path).expect("docs/configuration.md");
        let start = doc.find(BEGIN).expect("table start marker") + BEGIN.len();
        let end = doc.find(END).expect("table end marker");
        let want = super::markdown();
        if doc[start..end] != want {
            if std::env::var_os("RILL_UPDATE_DOCS").is_some() {
                let fresh = format!("{}{}{}", &doc[..start], want, &doc[end..]);
                std::fs::write(path, fresh).expect("write docs");
                return;
            }
            panic!("docs/configuration.md is stale; run RILL_UPDATE_DOCS=1 cargo test --lib config::table\n{want}");
        }
    }
}
