//! The one paging implementation of every list command: `--limit N` and `--after CURSOR`
//! (one page, with the next page's `--after` on stderr when more rows follow, in every
//! format), or `--all` (every row, written as it is read, in pages of [`ALL_PAGE`] so
//! memory stays bounded). Each command supplies the query of one page and the cursor of a
//! row; the services page by keyset, so a deep page costs what the first does.

use serde::Serialize;

use super::output::Printer;
use crate::Error;
use crate::domain::Page;

/// Rows per query of `--all`: what a command holds in memory at once.
pub const ALL_PAGE: i64 = 1000;

/// `--limit`, `--after` and `--all`, shared by every list command.
#[derive(Debug, Clone, clap::Args)]
pub struct PageArgs {
    /// Page size (1–10000). When more rows follow, stderr names the next page's --after.
    #[arg(long, default_value_t = Page::DEFAULT_LIMIT, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub limit: i64,
    /// Continue after this cursor: the one the previous page's stderr hint names.
    #[arg(long, value_name = "CURSOR")]
    pub after: Option<String>,
    /// Every row, written as it is read (one JSON array, one id per line with -q), in pages
    /// of 1000 so memory stays bounded.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
}

/// Prints one page of a list (`--limit`/`--after`) or all of it (`--all`). `fetch` runs the
/// query of one page; `cursor` gives a row's paging cursor, which the stderr hint names.
/// One more row than the page holds is read, so the hint appears only when rows do follow.
///
/// Errors: whatever `fetch` returns; [`Error::Invalid`] for a cursor with control characters.
pub async fn print<T, F>(
    out: &Printer,
    args: PageArgs,
    columns: &[&str],
    id_key: &str,
    cursor: impl Fn(&T) -> String,
    mut fetch: F,
) -> Result<(), Error>
where
    T: Serialize,
    F: AsyncFnMut(Page) -> Result<Vec<T>, Error>,
{
    if let Some(after) = &args.after {
        crate::domain::clean_text("cursor", after, 1000)?;
    }
    if args.all {
        let mut page = Page {
            limit: ALL_PAGE,
            after: args.after,
        };
        let mut stream = out.stream(columns, id_key);
        loop {
            let rows = fetch(page.clone()).await?;
            stream.push(&rows);
            match rows.last() {
                Some(last) if rows.len() as i64 == page.limit => page.after = Some(cursor(last)),
                _ => break,
            }
        }
        stream.finish();
        return Ok(());
    }
    let mut rows = fetch(Page {
        limit: args.limit + 1,
        after: args.after,
    })
    .await?;
    let more = rows.len() as i64 > args.limit;
    rows.truncate(usize::try_from(args.limit).unwrap_or(usize::MAX));
    let next = rows.last().filter(|_| more).map(|last| shell_word(&cursor(last)));
    out.page(&rows, columns, id_key, next);
    Ok(())
}

/// A cursor as the operator can paste it into a shell: bare when it is made of characters
/// no shell treats specially, else in single quotes.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | '@' | '+' | ':' | ','));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn cursors_are_quoted_only_when_a_shell_would_split_or_expand_them() {
        assert_eq!(shell_word("user03"), "user03");
        assert_eq!(shell_word("alice/editor"), "alice/editor");
        assert_eq!(shell_word("Acme Corp"), "'Acme Corp'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
