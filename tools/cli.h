//===- tools/cli.h - declaring and parsing the kiln commands' options -*- C++ -*-===//
//
// Each command declares every option once, on a cli::Command: its name, the
// name of its value, the help text, the default, the allowed values (each
// with a one-line meaning), the help section it belongs to and the variable
// it fills. That one declaration drives both the parser and `--help`, so the
// two cannot drift; options several commands share are declared by one
// function in tools/options.h.
//
// CLI11 tokenises: `--name=value`, `--name value`, `-x value`, flags,
// positional arguments anywhere, `--` ending the options, -h/--help. It
// stores every value as a string; this layer converts and checks them, so
// that each message is kiln's own rather than CLI11's ("Could not convert:
// --lr = abc"): an unknown option names the nearest known one, a value that
// is not a number or not an allowed one says what was expected, an option
// given twice is an error. These are UsageError: the driver prints
// `kiln: error: ...` with a pointer to --help and exits with status 2.
//
// Test hook: with KILN_LIST_OPTIONS=1 in the environment a command prints
// every option its parser accepts (read back from CLI11's own registry,
// hidden ones included) and exits 0; tests/lit/options.test compares that
// list with --help for every command.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/diagnostic.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fmt/format.h>
#include <functional>
#include <map>
#include <memory>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln::cli {

/// A usage error: printed with a pointer to --help, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// An allowed value of an option, with what it means (shown under the option
/// in --help when not empty).
struct Choice {
  std::string value;
  std::string meaning;
};

/// "a, b or c" for messages.
inline std::string listOr(const std::vector<std::string> &items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i)
    out += (i == 0 ? "" : i + 1 == items.size() ? " or " : ", ") + items[i];
  return out;
}

/// One declared option. The setters return *this, so a declaration reads
/// cmd.option(...).choices(...).defaultText(...).
class Option {
public:
  /// The allowed values; any other is a usage error naming them.
  Option &choices(std::vector<Choice> allowed) {
    choices_ = std::move(allowed);
    return *this;
  }
  /// What --help shows as the default, for defaults that depend on other
  /// options or on a checkpoint (plain defaults are shown from the target).
  Option &defaultText(std::string text) {
    defaultText_ = std::move(text);
    return *this;
  }
  /// The command fails with "CMD needs --name VALUE" without it.
  Option &required() {
    required_ = true;
    return *this;
  }
  /// A check of each value beyond its type (throws UsageError).
  Option &check(std::function<void(const std::string &value)> validate) {
    validate_ = std::move(validate);
    return *this;
  }
  /// An integer option whose values must be at least `min` (a batch of 0
  /// would loop forever, 0 epochs would save an untrained "final" model).
  Option &atLeast(int64_t min);
  /// A label the command can ask for: Command::tagged(label) lists the
  /// options that carry it (train marks the recipe that --resume fixes).
  Option &tag(std::string label) {
    tags_.push_back(std::move(label));
    return *this;
  }

  const std::string &name() const { return name_; }
  bool given() const { return count() > 0; }
  size_t count() const { return flag_ ? static_cast<size_t>(flagCount_) : raw_.size(); }

private:
  friend class Command;
  std::string name_;      ///< the long name (or the short one when it has no long one)
  std::string cliNames_;  ///< as CLI11 takes them: "-o" or "--emit"
  std::string valueName_; ///< empty for a flag
  std::string help_;
  std::string defaultText_;
  std::string section_;
  std::vector<Choice> choices_;
  std::vector<std::string> tags_;
  bool required_ = false, repeatable_ = false, flag_ = false;
  std::vector<std::string> raw_; ///< filled by CLI11, one entry per occurrence
  int64_t flagCount_ = 0;        ///< filled by CLI11
  std::function<void(const Option &)> store_;
  std::function<void(const std::string &)> validate_;
  CLI::Option *cli11_ = nullptr;
};

/// A non-negative integer value of option `name`.
inline int64_t parseCount(const std::string &name, const std::string &v) {
  char *end = nullptr;
  errno = 0;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || errno == ERANGE || n < 0 || v[0] == '+' || v[0] == ' ')
    throw UsageError(fmt::format("option {} needs a non-negative integer, got '{}'", name, v));
  return n;
}

inline Option &Option::atLeast(int64_t min) {
  std::string name = name_;
  return check([name, min](const std::string &v) {
    if (parseCount(name, v) < min) throw UsageError(fmt::format("option {} needs at least {}, got '{}'", name, min, v));
  });
}

/// A non-negative number value of option `name`, finite in f32: the
/// numbers become f32 constants and inputs of the graphs, where 1e300 would
/// be infinity.
inline double parseNumber(const std::string &name, const std::string &v) {
  char *end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || *end != '\0' || !(d >= 0))
    throw UsageError(fmt::format("option {} needs a non-negative number, got '{}'", name, v));
  if (d > std::numeric_limits<float>::max())
    throw UsageError(fmt::format("option {} needs a number of at most {:g} (kiln computes in f32), got '{}'", name,
                                 std::numeric_limits<float>::max(), v));
  return d;
}

/// Conversion of one option value into each target type a command can bind.
inline void convert(const std::string &, const std::string &v, std::string &out) { out = v; }
inline void convert(const std::string &name, const std::string &v, int64_t &out) { out = parseCount(name, v); }
inline void convert(const std::string &name, const std::string &v, double &out) { out = parseNumber(name, v); }
template <typename T> void convert(const std::string &name, const std::string &v, std::optional<T> &out) {
  T value{};
  convert(name, v, value);
  out = std::move(value);
}

template <typename T> struct IsVector : std::false_type {};
template <typename T> struct IsVector<std::vector<T>> : std::true_type {};
template <typename T> struct IsOptional : std::false_type {};
template <typename T> struct IsOptional<std::optional<T>> : std::true_type {};

/// A command's options and positional arguments, its parser and its --help.
class Command {
public:
  /// `usage` follows "usage: kiln NAME " in --help; `description` is the
  /// paragraph under it.
  Command(std::string name, std::string usage, std::string description)
      : name_(std::move(name)), usage_(std::move(usage)), description_(std::move(description)),
        app_(std::make_unique<CLI::App>("", "kiln " + name_)) {
    app_->set_help_flag("-h,--help", "print this help and exit");
    // Unknown arguments are collected rather than thrown by CLI11, so that
    // the error can name the nearest option.
    app_->allow_extras();
  }
  Command(const Command &) = delete;
  Command &operator=(const Command &) = delete;

  /// Options declared from here on are listed under "TITLE:" in --help
  /// (before any section: under "options:").
  void section(std::string title) { section_ = std::move(title); }
  /// Text printed after the options in --help.
  void epilogue(std::string text) { epilogue_ = std::move(text); }

  /// An option with a value, stored into `target` after parsing: a string,
  /// a non-negative int64_t or double (plain defaults: the target's value
  /// before parsing), a std::optional of one of those (absent when not
  /// given), or a std::vector<std::string> (repeatable).
  template <typename T> Option &option(const std::string &names, T &target, std::string valueName, std::string help) {
    Option &o = declare(names, std::move(valueName), std::move(help));
    if constexpr (IsVector<T>::value) {
      o.repeatable_ = true;
      o.store_ = [&target](const Option &opt) {
        target.clear();
        for (const std::string &v : opt.raw_) {
          typename T::value_type item{};
          convert(opt.name_, v, item);
          target.push_back(std::move(item));
        }
      };
    } else {
      if constexpr (std::is_same_v<T, std::string>) o.defaultText_ = target;
      else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>)
        o.defaultText_ = fmt::format("{}", target);
      o.store_ = [&target](const Option &opt) {
        if (!opt.raw_.empty()) convert(opt.name_, opt.raw_.front(), target);
      };
    }
    o.cli11_ = app_->add_option(o.cliNames_, o.raw_, o.help_);
    // One value per occurrence: `--param a=1 b` leaves b positional.
    o.cli11_->allow_extra_args(false)->type_name(o.valueName_)->group(o.section_);
    return o;
  }

  /// A flag: true when given, and `--flag=value` is an error.
  Option &flag(const std::string &names, bool &target, std::string help) {
    Option &o = declare(names, "", std::move(help));
    o.flag_ = true;
    o.store_ = [&target](const Option &opt) { target = opt.flagCount_ > 0; };
    o.cli11_ = app_->add_flag(o.cliNames_, o.flagCount_, o.help_);
    o.cli11_->disable_flag_override()->group(o.section_);
    return o;
  }

  /// The positional arguments, min to max of them (max 0: no limit), listed
  /// as VALUE in the usage line and under "arguments:" in --help.
  void positionals(std::string valueName, std::vector<std::string> &target, size_t min, size_t max, std::string help) {
    positionalName_ = std::move(valueName);
    positionalHelp_ = std::move(help);
    positionalMin_ = min;
    positionalMax_ = max;
    positionalTarget_ = &target;
    app_->add_option("args", positionalRaw_, positionalHelp_)->type_name(positionalName_);
  }
  /// Exactly one positional argument.
  void positional(std::string valueName, std::string &target, std::string help) {
    singleTarget_ = &target;
    positionals(std::move(valueName), singleStorage_, 1, 1, std::move(help));
  }
  /// Added to the error for positional arguments a command does not take.
  void extraArgumentHint(std::string hint) { extraHint_ = std::move(hint); }

  /// Parses argv[first..] into the declared targets. Returns false when the
  /// command should exit with status 0 at once (--help printed, or the
  /// option list of KILN_LIST_OPTIONS); throws UsageError for bad usage.
  bool parse(int argc, char **argv, int first) {
    if (const char *list = std::getenv("KILN_LIST_OPTIONS"); list && *list && std::string(list) != "0") {
      std::fputs(optionList().c_str(), stdout);
      return false;
    }
    std::vector<std::string> args;
    for (int i = argc - 1; i >= first; --i) { // CLI11 takes them reversed
      // `--name=` gives an option the empty value (CLI11 would call the
      // value missing): how --passes= says "no passes".
      std::string a = argv[i];
      bool beforeDashDash = std::find(argv + first, argv + i, std::string("--")) == argv + i;
      if (beforeDashDash && a.size() > 3 && a.back() == '=' && a.compare(0, 2, "--") == 0) {
        args.push_back("");
        a.pop_back();
      }
      args.push_back(a);
    }
    try {
      app_->parse(args);
    } catch (const CLI::CallForHelp &) {
      std::fputs(help().c_str(), stdout);
      return false;
    } catch (const CLI::ParseError &e) {
      throw UsageError(translate(e));
    }
    checkUnknown();
    checkPositionals();
    for (const auto &o : options_) {
      if (o->count() > 1 && !o->repeatable_ && !o->flag_)
        throw UsageError(fmt::format("option {} is given more than once", o->name_));
      if (!o->choices_.empty()) checkChoices(*o);
      if (o->validate_)
        for (const std::string &v : o->raw_) o->validate_(v);
      if (o->required_ && !o->given())
        throw UsageError(fmt::format("{} needs {} {}", name_, o->name_, o->valueName_));
      o->store_(*o);
    }
    return true;
  }

  /// Whether the command declares an option of this name.
  bool declares(const std::string &name) const {
    return std::any_of(options_.begin(), options_.end(), [&](const auto &o) { return o->name_ == name; });
  }
  /// Sets an option that was not given from `value` as if the command line
  /// had given it, with the same checks (kiln train's defaults from the
  /// model's `train` block); the option still counts as not given. A
  /// flag takes `true` or `false`.
  void applyDefault(const std::string &name, const std::string &value) {
    Option &o = find(name);
    if (o.given()) return;
    if (o.flag_) {
      if (value != "true" && value != "false")
        throw UsageError(fmt::format("{} is a flag: true or false, got '{}'", o.name_, value));
      o.flagCount_ = value == "true";
      o.store_(o);
      o.flagCount_ = 0;
      return;
    }
    o.raw_ = {value};
    struct Clear {
      Option &o;
      ~Clear() { o.raw_.clear(); }
    } clear{o};
    if (!o.choices_.empty()) checkChoices(o);
    if (o.validate_) o.validate_(value);
    o.store_(o);
  }

  /// Whether the option of this name was given (declared names only).
  bool given(const std::string &name) const { return find(name).given(); }
  /// The options carrying tag(label), in declaration order.
  std::vector<const Option *> tagged(const std::string &label) const {
    std::vector<const Option *> out;
    for (const auto &o : options_)
      if (std::find(o->tags_.begin(), o->tags_.end(), label) != o->tags_.end()) out.push_back(o.get());
    return out;
  }
  /// The declared option of this name (a std::logic_error when there is none).
  const Option &find(const std::string &name) const {
    for (const auto &o : options_)
      if (o->name_ == name) return *o;
    throw std::logic_error("kiln " + name_ + " declares no option " + name);
  }
  Option &find(const std::string &name) { return const_cast<Option &>(std::as_const(*this).find(name)); }

  /// --help, generated from CLI11's registry of this command's options and
  /// the declarations above.
  std::string help() const;
  /// Every option CLI11 accepts, "NAME flag" or "NAME value", one per line.
  std::string optionList() const {
    std::string out;
    for (const CLI::Option *o : app_->get_options()) {
      if (!o->nonpositional()) continue;
      const char *kind = o->get_expected_max() == 0 ? "flag" : "value";
      for (const std::string &s : o->get_snames()) out += fmt::format("-{} {}\n", s, kind);
      for (const std::string &l : o->get_lnames()) out += fmt::format("--{} {}\n", l, kind);
    }
    return out;
  }

  const std::string &name() const { return name_; }

private:
  Option &declare(const std::string &names, std::string valueName, std::string help) {
    auto o = std::make_unique<Option>();
    o->cliNames_ = names;
    o->name_ = names.substr(names.rfind(',') == std::string::npos ? 0 : names.rfind(',') + 1);
    o->valueName_ = std::move(valueName);
    o->help_ = std::move(help);
    o->section_ = section_.empty() ? "options" : section_;
    options_.push_back(std::move(o));
    return *options_.back();
  }

  const Option *declared(const CLI::Option *c) const {
    for (const auto &o : options_)
      if (o->cli11_ == c) return o.get();
    return nullptr;
  }

  std::vector<std::string> allNames() const {
    std::vector<std::string> names;
    for (const CLI::Option *o : app_->get_options()) {
      for (const std::string &s : o->get_snames()) names.push_back("-" + s);
      for (const std::string &l : o->get_lnames()) names.push_back("--" + l);
    }
    return names;
  }

  /// CLI11's messages for what it detects itself, in kiln's words. Only two
  /// can happen with string-vector storage: a missing value ("--lr: 1
  /// required X missing") and a flag given a value ("skip-bad was given a
  /// disallowed flag override"); both start with the option's name.
  std::string translate(const CLI::ParseError &e) const {
    std::string what = e.what();
    std::string head = what.substr(0, what.find_first_of(": "));
    head.erase(0, head.find_first_not_of('-'));
    for (const auto &o : options_) {
      if (o->name_.substr(o->name_.find_first_not_of('-')) != head) continue;
      if (o->flag_) return fmt::format("option {} takes no value", o->name_);
      return fmt::format("option {} needs a value ({} {})", o->name_, o->name_, o->valueName_);
    }
    return what;
  }

  /// Unknown options; CLI11 also leaves here the positional arguments of a
  /// command that declares none, which checkPositionals() reports.
  void checkUnknown() {
    for (const std::string &arg : app_->remaining()) {
      if (arg == "--") continue; // CLI11 keeps the separator among the extras
      if (arg.size() < 2 || arg[0] != '-') {
        positionalRaw_.push_back(arg);
        continue;
      }
      std::string name = arg.substr(0, arg.rfind("--", 0) == 0 ? arg.find('=') : std::string::npos);
      std::string hint = nearestName(name, allNames());
      std::string message = fmt::format("unknown option '{}'", name);
      // "-5 stars" or "-notes.txt" is more likely a misplaced argument than
      // a misspelt option.
      bool optionLike =
          std::all_of(name.begin() + 1, name.end(), [](unsigned char c) { return std::isalnum(c) || c == '-'; });
      if (!hint.empty()) message += fmt::format("; did you mean '{}'?", hint);
      else if (positionalTarget_ && !optionLike)
        message += fmt::format("; put a {} that starts with '-' after '--'", positionalName_);
      throw UsageError(message);
    }
  }

  void checkPositionals() {
    if (!positionalTarget_) {
      if (!positionalRaw_.empty())
        throw UsageError(fmt::format("{} takes no positional arguments, got '{}'{}", name_, positionalRaw_.front(),
                                     extraHint_.empty() ? "" : "; " + extraHint_));
      return;
    }
    if (positionalRaw_.size() < positionalMin_) throw UsageError(fmt::format("{} needs {}", name_, positionalName_));
    if (positionalMax_ && positionalRaw_.size() > positionalMax_)
      throw UsageError(fmt::format("{} takes {} {}, got '{}' too{}", name_,
                                   positionalMax_ == 1 ? "one" : fmt::format("at most {}", positionalMax_),
                                   positionalName_, positionalRaw_[positionalMax_],
                                   extraHint_.empty() ? "" : "; " + extraHint_));
    *positionalTarget_ = positionalRaw_;
    if (singleTarget_) *singleTarget_ = positionalRaw_.front();
  }

  static void checkChoices(const Option &o) {
    std::vector<std::string> allowed;
    for (const Choice &c : o.choices_) allowed.push_back(c.value);
    for (const std::string &v : o.raw_) {
      if (std::find(allowed.begin(), allowed.end(), v) != allowed.end()) continue;
      std::string hint = nearestName(v, allowed);
      throw UsageError(fmt::format("{} takes {}, got '{}'{}", o.name_, listOr(allowed), v,
                                   hint.empty() ? "" : "; did you mean '" + hint + "'?"));
    }
  }

  std::string name_, usage_, description_, epilogue_, section_;
  std::unique_ptr<CLI::App> app_;
  std::vector<std::unique_ptr<Option>> options_;
  std::string positionalName_, positionalHelp_, extraHint_;
  size_t positionalMin_ = 0, positionalMax_ = 0;
  std::vector<std::string> *positionalTarget_ = nullptr;
  std::vector<std::string> positionalRaw_, singleStorage_;
  std::string *singleTarget_ = nullptr;
};

namespace detail {

/// Joins words that wrap() keeps on one line; shown as a space.
inline constexpr char kNoBreak = '\x1f';

/// Words of text in lines of at most `width` columns (a longer word gets a
/// line of its own); kNoBreak joins words without a break between them.
inline std::vector<std::string> wrap(const std::string &text, size_t width) {
  std::vector<std::string> lines;
  std::string line;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find(' ', pos);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(pos, end - pos);
    pos = end + 1;
    if (word.empty()) continue;
    if (!line.empty() && line.size() + 1 + word.size() > width) {
      lines.push_back(line);
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty() || lines.empty()) lines.push_back(line);
  for (std::string &l : lines) std::replace(l.begin(), l.end(), kNoBreak, ' ');
  return lines;
}

/// One entry of a help section: `left` in the first column, `text` wrapped
/// beside it, then one line per allowed value.
inline void helpRow(std::string &out, const std::string &left, const std::string &text,
                    const std::vector<Choice> &choices, size_t column) {
  constexpr size_t kWidth = 79;
  std::string first = "  " + left;
  std::vector<std::string> lines = wrap(text, kWidth - column);
  if (first.size() + 2 > column) {
    out += first + "\n";
    first.clear();
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string lead = i == 0 && !first.empty() ? first : "";
    out += lead + std::string(column - lead.size(), ' ') + lines[i] + "\n";
  }
  size_t valueWidth = 0;
  for (const Choice &c : choices)
    if (!c.meaning.empty()) valueWidth = std::max(valueWidth, c.value.size());
  for (const Choice &c : choices) {
    if (c.meaning.empty()) continue;
    size_t indent = column + 2 + valueWidth + 2;
    std::vector<std::string> meaning = wrap(c.meaning, kWidth > indent + 20 ? kWidth - indent : 20);
    for (size_t i = 0; i < meaning.size(); ++i) {
      std::string lead = i == 0 ? std::string(column + 2, ' ') + c.value : "";
      out += lead + std::string(indent - lead.size(), ' ') + meaning[i] + "\n";
    }
  }
}

} // namespace detail

inline std::string Command::help() const {
  struct Row {
    std::string left, text;
    const std::vector<Choice> *choices = nullptr;
  };
  std::vector<std::pair<std::string, std::vector<Row>>> sections;
  auto sectionRows = [&](const std::string &title) -> std::vector<Row> & {
    for (auto &[t, rows] : sections)
      if (t == title) return rows;
    sections.push_back({title, {}});
    return sections.back().second;
  };
  static const std::vector<Choice> none;
  Row helpRow;
  for (const CLI::Option *c : app_->get_options()) {
    std::string names;
    for (const std::string &s : c->get_snames()) names += (names.empty() ? "-" : ", -") + s;
    for (const std::string &l : c->get_lnames()) names += (names.empty() ? "--" : ", --") + l;
    if (c == app_->get_help_ptr()) {
      helpRow = {names, c->get_description(), &none};
      continue;
    }
    if (c->get_positional()) {
      bool many = positionalMax_ != 1;
      sectionRows("arguments").push_back({positionalName_ + (many ? " ..." : ""), positionalHelp_, &none});
      continue;
    }
    const Option *o = declared(c);
    if (!o) { // declared on CLI11 directly: still listed, from what CLI11 knows
      sectionRows(c->get_group()).push_back({names + (c->get_expected_max() ? " " + c->get_type_name() : ""),
                                             c->get_description(), &none});
      continue;
    }
    std::string text = o->help_;
    if (!o->choices_.empty()) {
      std::string values;
      for (const Choice &ch : o->choices_) values += (values.empty() ? "" : " | ") + ch.value;
      text += (text.empty() ? "" : ": ") + values;
    }
    if (o->required_) text += " (required)";
    if (o->repeatable_) text += " (repeatable)";
    if (!o->defaultText_.empty()) text += std::string(" (default:") + detail::kNoBreak + o->defaultText_ + ")";
    sectionRows(o->section_).push_back({names + (o->flag_ ? "" : " " + o->valueName_), text, &o->choices_});
  }
  // The positional arguments come first, wherever they were declared.
  std::stable_partition(sections.begin(), sections.end(), [](const auto &s) { return s.first == "arguments"; });
  if (sections.empty() || sections.back().first == "arguments") sections.push_back({"options", {}});
  sections.back().second.push_back(helpRow);

  size_t widest = 0;
  for (const auto &[title, rows] : sections)
    for (const Row &r : rows) widest = std::max(widest, r.left.size());
  size_t column = 2 + std::min<size_t>(widest, 22) + 2;

  std::string out = fmt::format("usage: kiln {}{}\n\n{}", name_, usage_.empty() ? "" : " " + usage_, description_);
  if (!description_.empty() && description_.back() != '\n') out += "\n";
  for (const auto &[title, rows] : sections) {
    out += "\n" + title + ":\n";
    for (const Row &r : rows) detail::helpRow(out, r.left, r.text, *r.choices, column);
  }
  if (!epilogue_.empty()) out += "\n" + epilogue_ + (epilogue_.back() == '\n' ? "" : "\n");
  return out;
}

} // namespace kiln::cli
