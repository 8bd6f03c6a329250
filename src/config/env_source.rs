//! Bad values that came from a `RILL_*` variable are reported under the
//! variable's name.
//!
//! clap checks an environment value exactly like a flag's and names the flag
//! in its error (`invalid value 'abc' for '--mock-delay-ms <MOCK_DELAY_MS>'`),
//! which sends a user looking for a flag they never typed. When the refused
//! value is the variable's (or one of its comma-separated parts) and the
//! flag did not carry it on the command line, it came from the variable, so
//! the message is rewritten to name it. This works from clap's error
//! context, for every flag that has a variable, without a list to keep up
//! to date.

use std::ffi::OsString;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command};

/// The error to show instead of `err`, when `err` is about a value that
/// came from an environment variable; `None` to show `err` as it is.
pub fn rewrite(err: &clap::Error, cmd: &Command, argv: &[OsString]) -> Option<clap::Error> {
    if !matches!(
        err.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    ) {
        return None;
    }
    let Some(ContextValue::String(shown)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    // Showing an argument, as the search does, needs a built command.
    let mut built = cmd.clone();
    built.build();
    let arg = find_arg(&built, shown)?;
    let var = arg.get_env()?.to_string_lossy().into_owned();
    let long = arg.get_long()?;
    let Some(ContextValue::String(refused)) = err.get(ContextKind::InvalidValue) else {
        return None;
    };
    let set = std::env::var(&var).ok()?;
    let from_var = match arg.get_value_delimiter() {
        Some(d) => set.split(d).any(|part| part == refused),
        None => set == *refused,
    };
    if !from_var || typed(argv, long, refused) {
        return None;
    }
    let reason = reason(err);
    let message = format!(
        "invalid value '{refused}' in the environment variable {var} (read for --{long}){reason}\n\n  \
         fix or unset {var}, or pass --{long} to override it\n"
    );
    Some(clap::Error::raw(err.kind(), message).with_cmd(cmd))
}

/// Whether `--long value` or `--long=value` is on the command line: then
/// clap's message, which names the flag, is the right one.
fn typed(argv: &[OsString], long: &str, value: &str) -> bool {
    let flag = format!("--{long}");
    let joined = format!("{flag}={value}");
    argv.windows(2)
        .any(|w| w[0].to_string_lossy() == flag && w[1].to_string_lossy().contains(value))
        || argv
            .iter()
            .any(|a| a.to_string_lossy().starts_with(&joined))
}

/// Why the value was refused, as clap would have said it.
fn reason(err: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(err) {
        return format!(": {source}");
    }
    match err.get(ContextKind::ValidValue) {
        Some(ContextValue::Strings(valid)) => format!("; possible values: {}", valid.join(", ")),
        _ => String::new(),
    }
}

/// The argument that clap shows as `shown`, in `cmd` or a subcommand.
fn find_arg<'c>(cmd: &'c Command, shown: &str) -> Option<&'c Arg> {
    cmd.get_arguments()
        .find(|a| a.to_string() == shown && a.get_env().is_some())
        .or_else(|| cmd.get_subcommands().find_map(|s| find_arg(s, shown)))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::config::Cli;

    fn argv(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_value_counts_as_typed_only_with_its_flag() {
        assert!(typed(
            &argv(&["rill", "--retry-ms", "abc"]),
            "retry-ms",
            "abc"
        ));
        assert!(typed(&argv(&["rill", "--retry-ms=abc"]), "retry-ms", "abc"));
        assert!(!typed(
            &argv(&["rill", "--retry-ms", "5"]),
            "retry-ms",
            "abc"
        ));
        assert!(!typed(
            &argv(&["rill", "--keepalive-secs", "abc"]),
            "retry-ms",
            "abc"
        ));
    }

    #[test]
    fn finds_flags_of_subcommands_and_only_those_with_a_variable() {
        let mut cmd = Cli::command();
        cmd.build();
        let arg = find_arg(&cmd, "--token <JWT>").expect("rill tail --token");
        assert_eq!(arg.get_env().unwrap(), "RILL_TOKEN");
        assert!(find_arg(&cmd, "--from <FROM>").is_none(), "no variable");
    }
}
