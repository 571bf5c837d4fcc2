//! The full-screen `top` view (ratatui + crossterm): the terminal session (raw mode, alternate
//! screen, restored on every exit path including a panic), the key loop and the drawing.

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::Context;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row as TableRow, Table};
use ratatui::{Frame, Terminal};

use super::stats::format_secs;
use super::{function_heading, lock, Live, Shared, Snapshot, SortKey, View, Watched};

/// Run the view until `q`/Esc/Ctrl-C (or `stop`). Percentages refresh every `delay`; keys
/// take effect at once. `repaint`: redraw every cell at each refresh, for a program we started
/// whose own output may land on the screen.
pub fn run(
    shared: &Shared,
    watched: &Watched,
    delay: Duration,
    stop: &AtomicBool,
    repaint: bool,
) -> anyhow::Result<()> {
    let mut session = TerminalSession::enter()?;
    let mut view = View::default();
    // While paused, the display shows this copy; sampling goes on into `shared`.
    let mut frozen: Option<Live> = None;
    let mut next_refresh = Instant::now() + delay;
    let mut dirty = true;
    let mut shown_end = false;
    while !stop.load(Ordering::Relaxed) {
        // The lock is held only to rotate and copy out, never across terminal output.
        let mut clear = false;
        let snapshot = {
            let mut live = lock(shared);
            if live.sampler_failed {
                anyhow::bail!("the sampling thread failed");
            }
            let now = Instant::now();
            if now >= next_refresh {
                live.rotate(now);
                next_refresh = now + delay;
                dirty = true;
                clear = repaint;
            }
            if live.ended.is_some() && !shown_end {
                shown_end = true;
                dirty = true;
            }
            dirty.then(|| {
                let mut s = match &frozen {
                    Some(f) => f.snapshot(watched, &view, true),
                    None => live.snapshot(watched, &view, false),
                };
                s.header.exited = live.target_exited();
                s
            })
        };
        if clear {
            // Forget what ratatui thinks is on screen, so the next draw writes every cell.
            session.terminal.clear().context("clearing the terminal")?;
        }
        if let Some(snapshot) = snapshot {
            session
                .terminal
                .draw(|f| draw(f, &snapshot))
                .context("drawing the terminal")?;
            dirty = false;
        }
        let timeout = next_refresh
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(200));
        if !event::poll(timeout).context("reading the terminal")? {
            continue;
        }
        match event::read().context("reading the terminal")? {
            Event::Key(key) => match handle_key(key, &mut view, watched.subprocesses) {
                Action::Quit => break,
                Action::Reset => {
                    let mut live = lock(shared);
                    live.reset(Instant::now());
                    if frozen.is_some() {
                        frozen = Some(live.clone());
                    }
                    dirty = true;
                }
                Action::TogglePause => {
                    frozen = match frozen {
                        Some(_) => None,
                        None => Some(lock(shared).clone()),
                    };
                    dirty = true;
                }
                Action::Redraw => dirty = true,
                Action::Nothing => {}
            },
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
    Ok(())
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    Reset,
    TogglePause,
    /// The view changed.
    Redraw,
    Nothing,
}

/// Apply a key to the view; what else it asks for.
pub fn handle_key(key: KeyEvent, view: &mut View, subprocesses: bool) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Nothing;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => Action::Quit,
        KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => Action::Quit,
        KeyCode::Char(c @ '1'..='4') => {
            if let Some(k) = SortKey::from_digit(c) {
                view.press_sort(k);
            }
            Action::Redraw
        }
        KeyCode::Char('l') | KeyCode::Char('L') => {
            view.line_numbers = !view.line_numbers;
            Action::Redraw
        }
        KeyCode::Char('p') | KeyCode::Char('P') if subprocesses => {
            view.group_by_process = !view.group_by_process;
            Action::Redraw
        }
        KeyCode::Char('r') | KeyCode::Char('R') => Action::Reset,
        KeyCode::Char(' ') => Action::TogglePause,
        _ => Action::Nothing,
    }
}

/// Draw one screen. Any size works: what does not fit is cut.
pub fn draw(frame: &mut Frame, snapshot: &Snapshot) {
    let [head, body] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(0)]).areas(frame.area());
    frame.render_widget(Paragraph::new(header_lines(snapshot)), head);

    let view = &snapshot.view;
    let columns = columns(view, snapshot.header.watched.subprocesses, body.width);
    let mut header: Vec<Cell> = columns
        .iter()
        .map(|c| match c {
            Column::Pid => right("PID".into()),
            Column::Stat(key) => {
                let mark = match (*key == view.sort, view.reversed) {
                    (false, _) => "",
                    (true, false) => "▼",
                    (true, true) => "▲",
                };
                right(format!("{}{mark}", key.label()))
            }
        })
        .collect();
    header.push(Cell::from(function_heading(view)));
    let mut widths: Vec<Constraint> = columns
        .iter()
        .map(|c| Constraint::Length(c.width()))
        .collect();
    widths.push(Constraint::Min(FUNCTION_MIN_WIDTH));

    let visible = usize::from(body.height.saturating_sub(1));
    let rows = snapshot.rows.iter().take(visible).map(|r| {
        let mut cells: Vec<Cell> = columns
            .iter()
            .map(|c| {
                right(match c {
                    Column::Pid => r.pid.map(|p| p.to_string()).unwrap_or_default(),
                    Column::Stat(SortKey::OwnPct) => format!("{:.1}%", r.own_pct),
                    Column::Stat(SortKey::TotalPct) => format!("{:.1}%", r.total_pct),
                    Column::Stat(SortKey::OwnTime) => format_secs(r.own_secs),
                    Column::Stat(SortKey::TotalTime) => format_secs(r.total_secs),
                })
            })
            .collect();
        cells.push(Cell::from(r.label()));
        TableRow::new(cells)
    });
    let table = Table::new(rows, widths)
        .header(TableRow::new(header).style(Style::default().add_modifier(Modifier::REVERSED)))
        .column_spacing(1);
    frame.render_widget(table, body);
}

/// The function column gets at least this many cells before numbers are dropped.
const FUNCTION_MIN_WIDTH: u16 = 12;

/// A column left of the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Pid,
    Stat(SortKey),
}

impl Column {
    fn width(self) -> u16 {
        match self {
            Column::Pid | Column::Stat(SortKey::OwnPct) | Column::Stat(SortKey::TotalPct) => 7,
            Column::Stat(SortKey::OwnTime) => 9,
            Column::Stat(SortKey::TotalTime) => 10,
        }
    }
}

/// The columns that fit in `width`: on a narrow terminal the least useful go first (never the
/// sorted one), so the function names stay readable.
fn columns(view: &View, per_process: bool, width: u16) -> Vec<Column> {
    let mut columns: Vec<Column> = per_process
        .then_some(Column::Pid)
        .into_iter()
        .chain(SortKey::ALL.map(Column::Stat))
        .collect();
    let fits = |cols: &[Column]| {
        let used: u32 = cols.iter().map(|c| u32::from(c.width()) + 1).sum();
        used + u32::from(FUNCTION_MIN_WIDTH) <= u32::from(width)
    };
    let drop_order = [
        Column::Stat(SortKey::TotalTime),
        Column::Stat(SortKey::OwnTime),
        Column::Stat(SortKey::TotalPct),
        Column::Stat(SortKey::OwnPct),
        Column::Pid,
    ];
    for victim in drop_order {
        if fits(&columns) {
            break;
        }
        if victim != Column::Stat(view.sort) {
            columns.retain(|c| *c != victim);
        }
    }
    columns
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

fn header_lines(snapshot: &Snapshot) -> Vec<Line<'static>> {
    let h = &snapshot.header;
    let view = &snapshot.view;
    let mut title = vec![Span::styled(
        h.title(),
        Style::default().add_modifier(Modifier::BOLD),
    )];
    if let Some(state) = h.state() {
        title.push(Span::raw("  "));
        title.push(Span::styled(
            state,
            Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        ));
    }
    let mut keys = format!(
        "sort: {}{} | 1-4 sort, L lines, R reset, space pause",
        view.describe_sort(),
        if view.group_by_process {
            ", by process"
        } else {
            ""
        }
    );
    if h.watched.subprocesses {
        keys.push_str(", P group by process");
    }
    keys.push_str(", q quit");
    vec![
        Line::from(title),
        Line::from(h.counters()),
        Line::from(keys),
    ]
}

/// Raw mode and the alternate screen, for as long as this lives (and not after a panic).
struct TerminalSession {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// Whether the terminal is in our raw/alternate mode: the panic hook restores it only then.
static ACTIVE: AtomicBool = AtomicBool::new(false);

impl TerminalSession {
    fn enter() -> anyhow::Result<Self> {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                // Restore first, so the panic message lands on a usable terminal.
                if ACTIVE.swap(false, Ordering::SeqCst) {
                    restore();
                }
                previous(info);
            }));
        });
        enable_raw_mode().context("cannot put the terminal in raw mode")?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = || -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
            crossterm::execute!(std::io::stdout(), EnterAlternateScreen)
                .context("cannot switch to the alternate screen")?;
            let mut terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))
                .context("cannot set up the terminal")?;
            terminal.hide_cursor().context("cannot hide the cursor")?;
            terminal.clear().context("cannot clear the terminal")?;
            Ok(terminal)
        };
        match setup() {
            Ok(terminal) => Ok(TerminalSession { terminal }),
            Err(e) => {
                if ACTIVE.swap(false, Ordering::SeqCst) {
                    restore();
                }
                Err(e)
            }
        }
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        if ACTIVE.swap(false, Ordering::SeqCst) {
            restore();
        }
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::top::{Header, Row};
    use ratatui::backend::TestBackend;

    fn snapshot(subprocesses: bool) -> Snapshot {
        Snapshot {
            header: Header {
                watched: Watched {
                    mode: "userspace",
                    pid: 42,
                    version: "3.11.2".into(),
                    rate_hz: 100,
                    subprocesses,
                },
                samples_per_sec: Some(100.0),
                total_samples: 1000,
                threads: 1,
                processes: 1,
                errors: 0,
                late: 0,
                paused: true,
                exited: true,
            },
            view: View::default(),
            rows: (0..100)
                .map(|i| Row {
                    pid: subprocesses.then_some(42),
                    function: format!("function_{i}"),
                    location: Some(format!("app.py:{i}")),
                    own_pct: 99.0 - i as f64,
                    total_pct: 99.0,
                    own_secs: 12.0,
                    total_secs: 99.0,
                })
                .collect(),
        }
    }

    fn screen(width: u16, height: u16, snapshot: &Snapshot) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| draw(f, snapshot)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut text = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                text.push_str(buffer[(x, y)].symbol());
            }
            text.push('\n');
        }
        text
    }

    #[test]
    fn draws_header_and_rows() {
        let text = screen(120, 10, &snapshot(false));
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("pid 42 (Python 3.11.2), userspace"),
            "{text}"
        );
        assert!(lines[0].contains("process 42 exited, PAUSED"), "{text}");
        assert!(lines[1].contains("samples: 100/s, 1000 total"), "{text}");
        assert!(lines[2].contains("sort: %Own (largest first)"), "{text}");
        assert!(lines[3].contains("%Own▼"), "{text}");
        assert!(lines[3].contains("Function (file:line)"), "{text}");
        assert!(lines[4].contains("99.0%"), "{text}");
        assert!(lines[4].contains("function_0 (app.py:0)"), "{text}");
        // Six rows fit under the header.
        assert!(lines[9].contains("function_5 "), "{text}");
    }

    #[test]
    fn process_column() {
        let text = screen(120, 6, &snapshot(true));
        assert!(text.contains("P group by process"), "{text}");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[3].trim_start().starts_with("PID"), "{text}");
        assert!(lines[4].trim_start().starts_with("42"), "{text}");
    }

    #[test]
    fn narrow_terminals_keep_the_sorted_column_and_the_names() {
        let text = screen(20, 5, &snapshot(false));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "  %Own▼ Function (fi", "{text}");
        assert_eq!(lines[4], "  99.0% function_0 (", "{text}");
        let mut s = snapshot(true);
        s.view.press_sort(SortKey::TotalTime);
        let text = screen(40, 5, &s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3], "    PID    %Own TotalTime▼ Function (fil",
            "{text}"
        );
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        for (w, h) in [(20, 5), (1, 1), (5, 2), (0, 0), (300, 3), (10, 100)] {
            screen(w, h, &snapshot(true));
            screen(w, h, &snapshot(false));
        }
    }

    #[test]
    fn keys() {
        let press = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
        let mut view = View::default();
        assert_eq!(handle_key(press('2'), &mut view, false), Action::Redraw);
        assert_eq!(view.sort, SortKey::TotalPct);
        handle_key(press('2'), &mut view, false);
        assert!(view.reversed);
        handle_key(press('L'), &mut view, false);
        assert!(!view.line_numbers);
        assert_eq!(handle_key(press('P'), &mut view, false), Action::Nothing);
        handle_key(press('p'), &mut view, true);
        assert!(view.group_by_process);
        assert_eq!(handle_key(press('R'), &mut view, false), Action::Reset);
        assert_eq!(
            handle_key(press(' '), &mut view, false),
            Action::TogglePause
        );
        assert_eq!(handle_key(press('q'), &mut view, false), Action::Quit);
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(handle_key(ctrl_c, &mut view, false), Action::Quit);
        let esc = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
        assert_eq!(handle_key(esc, &mut view, false), Action::Quit);
    }
}
