//===- runtime/data.cpp - labelled text data for training -----------------===//
//
// A data file is read whole, a leading UTF-8 byte order mark is dropped, and
// one small reader per format turns it into (label, text, line) records that
// all pass through one check (non-empty label, valid UTF-8). A bad record
// either throws kiln::Error located at `file:line:1` or, with skipBad, is
// counted and its first few messages kept for a warning. Problems that leave
// the rest of the file unreadable (an unterminated CSV quote, a CSV header
// without the needed columns) are errors even with skipBad.
//
// Shuffles use SplitMix64 and a hand-written Fisher-Yates with an unbiased
// bounded draw, not std::shuffle or <random>'s distributions, whose results
// differ between standard libraries: the same seed gives the same split and
// the same batches on every machine.
//
//===----------------------------------------------------------------------===//
#include "runtime/data.h"

#include "ir/diagnostic.h"
#include "runtime/random.h"
#include "runtime/json.h"
#include "runtime/text.h"
#include "runtime/utf8.h"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fmt/format.h>
#include <numeric>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>

namespace kiln::runtime {

namespace {

constexpr size_t kMaxProblems = 5;

void fisherYates(std::vector<size_t> &v, SplitMix64 &rng) {
  for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

std::vector<size_t> identity(size_t n) {
  std::vector<size_t> v(n);
  std::iota(v.begin(), v.end(), size_t{0});
  return v;
}

std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

std::string lowerAscii(std::string_view s) {
  std::string out(s);
  for (char &c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

[[noreturn]] void failIo(const std::string &what, const std::string &path, int err) {
  throw Error("cannot " + what + " '" + path + "': " + std::strerror(err));
}

} // namespace

// Reads until end of file rather than trusting st_size, so that pipes
// (`<(zcat data.tsv.gz)`) work as well as regular files.
std::string readFile(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) failIo("open", path, errno);
  struct stat sb {};
  if (::fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    ::close(fd);
    throw Error("cannot read '" + path + "': is a directory");
  }
  std::string bytes;
  if (S_ISREG(sb.st_mode)) bytes.reserve(static_cast<size_t>(sb.st_size));
  char buf[1 << 16];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      ::close(fd);
      failIo("read", path, err);
    }
    if (r == 0) break;
    bytes.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return bytes;
}

namespace {

DataFormat formatOf(const std::string &path) {
  std::string ext = lowerAscii(std::filesystem::path(path).extension().string());
  if (ext == ".tsv") return DataFormat::Tsv;
  if (ext == ".csv") return DataFormat::Csv;
  if (ext == ".jsonl" || ext == ".json") return DataFormat::Jsonl;
  throw Error("cannot tell the format of '" + path + "' from its extension; use .tsv, .csv, .jsonl or .json");
}

/// Collects records from one file and decides what a bad one does.
class Reader {
public:
  Reader(const std::string &path, const ReadOptions &options, ReadStats &stats)
      : path_(path), options_(options), stats_(stats) {}

  /// A record that cannot be used; the reader goes on with the next one.
  void bad(size_t line, const std::string &message) {
    if (!options_.skipBad) fatal(line, message);
    ++stats_.skipped;
    if (stats_.problems.size() < kMaxProblems)
      stats_.problems.push_back(fmt::format("{}:{}: {}", path_, line, message));
  }

  /// Column 1 rather than 0 (unknown) so that the driver prints the usual
  /// `file:line:col: error:` shape.
  [[noreturn]] void fatal(size_t line, const std::string &message) const {
    throw Error(message, SourceLoc{path_, static_cast<int>(line), 1});
  }

  void add(std::string_view label, std::string_view text, size_t line) {
    label = trim(label);
    if (label.empty()) return bad(line, "empty label");
    // The tokenizer would catch invalid UTF-8 in the text too, but only
    // later and without saying which record.
    if (size_t at = utf8::firstInvalid(label); at != utf8::npos)
      return bad(line, fmt::format("invalid UTF-8 in the label at byte {}", at));
    if (size_t at = utf8::firstInvalid(text); at != utf8::npos)
      return bad(line, fmt::format("invalid UTF-8 in the text at byte {}", at));
    examples.push_back(RawExample{std::string(label), std::string(text), line});
    ++stats_.records;
  }

  void readTsv(std::string_view s, size_t firstLine);
  void readJsonl(std::string_view s, size_t firstLine);
  void readCsv(std::string_view s);

  std::vector<RawExample> examples;

private:
  const std::string &path_;
  const ReadOptions &options_;
  ReadStats &stats_;
};

/// Calls f(lineNumber, line) for every line that is not blank, without its
/// line end (LF or CRLF); s's first line is line firstLine of the file.
template <typename F> void forEachLine(std::string_view s, size_t firstLine, F f) {
  size_t line = firstLine - 1;
  for (size_t pos = 0; pos < s.size();) {
    size_t end = s.find('\n', pos);
    if (end == std::string_view::npos) end = s.size();
    std::string_view l = s.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    if (!trim(l).empty()) f(line, l);
  }
}

void Reader::readTsv(std::string_view s, size_t firstLine) {
  forEachLine(s, firstLine, [&](size_t line, std::string_view l) {
    size_t tab = l.find('\t');
    if (tab == std::string_view::npos) return bad(line, "expected 'label<TAB>text' but the line has no tab");
    // Further tabs stay in the text; the tokenizer treats them as spaces.
    add(l.substr(0, tab), l.substr(tab + 1), line);
  });
}

void Reader::readJsonl(std::string_view s, size_t firstLine) {
  // A pretty-printed JSON array would fail on every line; say why once
  // (at the file's start: a data-parallel process may read from its middle).
  if (std::string_view t = trim(s); firstLine == 1 && !t.empty() && t.front() == '[')
    fatal(firstLine + static_cast<size_t>(std::count(s.begin(), s.begin() + (t.data() - s.data()), '\n')),
          "expected JSON Lines (one object per line), found a JSON array");
  forEachLine(s, firstLine, [&](size_t line, std::string_view l) {
    json::Value v;
    try {
      v = json::parse(l);
    } catch (const Error &e) {
      return bad(line, e.message());
    }
    if (!v.isObject()) return bad(line, fmt::format("expected a JSON object, found {}", json::kindName(v.kind())));
    const json::Value *label = v.find("label");
    const json::Value *text = v.find("text");
    if (!label) return bad(line, "missing \"label\"");
    if (!text) return bad(line, "missing \"text\"");
    // Integer class ids are common in published data sets; they become the
    // label's decimal text so that all formats give string labels.
    if (!label->isString() && !label->isInt())
      return bad(line, fmt::format("\"label\" must be a string or an integer, found {}",
                                   label->isNumber() ? "a fractional number" : json::kindName(label->kind())));
    if (!text->isString())
      return bad(line, fmt::format("\"text\" must be a string, found {}", json::kindName(text->kind())));
    std::string name = label->isString() ? label->asString() : std::to_string(label->asInt());
    add(name, text->asString(), line);
  });
}

/// RFC 4180 records: fields separated by commas, records by LF or CRLF,
/// quoted fields may hold commas, line ends and "" for a quote.
class CsvScanner {
public:
  struct Record {
    std::vector<std::string> fields;
    size_t line = 0;         ///< where the record starts
    std::string problem;     ///< non-empty when the record is malformed
    size_t unterminated = 0; ///< line of a quote that never closes, or 0
  };

  explicit CsvScanner(std::string_view s) : s_(s) {}

  bool next(Record &r) {
    if (pos_ >= s_.size()) return false;
    r.fields.clear();
    r.problem.clear();
    r.unterminated = 0;
    r.line = line_;
    for (;;) {
      std::string field;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        if (!quoted(field, r)) return true;
        // RFC 4180 allows nothing between a closing quote and the separator.
        if (!atFieldEnd() && r.problem.empty()) r.problem = "unexpected character after a closing quote";
      }
      while (!atFieldEnd()) field += s_[pos_++];
      r.fields.push_back(std::move(field));
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '\r') ++pos_;
      if (pos_ < s_.size() && s_[pos_] == '\n') ++pos_, ++line_;
      return true;
    }
  }

private:
  bool atFieldEnd() const {
    if (pos_ >= s_.size() || s_[pos_] == ',' || s_[pos_] == '\n') return true;
    return s_[pos_] == '\r' && (pos_ + 1 == s_.size() || s_[pos_ + 1] == '\n');
  }

  /// Reads a quoted field starting at the opening quote; false when the
  /// file ends inside it.
  bool quoted(std::string &field, Record &r) {
    size_t open = line_;
    for (++pos_; pos_ < s_.size(); ++pos_) {
      char c = s_[pos_];
      if (c == '"') {
        if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '"') {
          field += '"';
          ++pos_;
          continue;
        }
        ++pos_;
        return true;
      }
      if (c == '\n') ++line_;
      field += c;
    }
    r.unterminated = open;
    return false;
  }

  std::string_view s_;
  size_t pos_ = 0;
  size_t line_ = 1;
};

bool isBlank(const CsvScanner::Record &r) { return r.fields.size() == 1 && trim(r.fields[0]).empty(); }

void Reader::readCsv(std::string_view s) {
  CsvScanner scanner(s);
  CsvScanner::Record r;
  auto nextRecord = [&] {
    while (scanner.next(r)) {
      // Everything after an open quote belongs to it, so no later record
      // can be trusted: this is an error even with skipBad.
      if (r.unterminated) fatal(r.unterminated, "unterminated quoted field");
      if (!isBlank(r)) return true;
    }
    return false;
  };
  if (!nextRecord()) return;

  size_t headerLine = r.line, labelCol = SIZE_MAX, textCol = SIZE_MAX;
  std::vector<std::string> header = r.fields;
  if (!r.problem.empty()) fatal(headerLine, "in the header: " + r.problem);
  for (size_t i = 0; i < header.size(); ++i) {
    std::string name = lowerAscii(trim(header[i]));
    size_t *col = name == "label" ? &labelCol : name == "text" ? &textCol : nullptr;
    if (!col) continue;
    if (*col != SIZE_MAX) fatal(headerLine, "the header names column '" + name + "' twice");
    *col = i;
  }
  if (labelCol == SIZE_MAX || textCol == SIZE_MAX) {
    std::string names;
    for (const std::string &h : header) names += (names.empty() ? "" : ", ") + std::string(trim(h));
    fatal(headerLine, "the CSV header must name a 'label' and a 'text' column; found: " + names);
  }

  while (nextRecord()) {
    if (!r.problem.empty()) {
      bad(r.line, r.problem);
      continue;
    }
    if (r.fields.size() != header.size()) {
      bad(r.line, fmt::format("expected {} fields as in the header, found {}", header.size(), r.fields.size()));
      continue;
    }
    add(r.fields[labelCol], r.fields[textCol], r.line);
  }
}

/// Labels that are all integers sort as numbers, so that class "10" comes
/// after "9" as a user would expect.
bool parseInt(const std::string &s, int64_t &out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

} // namespace

DataFormat dataFormat(const std::string &path, DataFormat forced) {
  return forced == DataFormat::Auto ? formatOf(path) : forced;
}

std::vector<RawExample> parseExamples(std::string_view bytes, const std::string &path, DataFormat format,
                                      const ReadOptions &options, ReadStats &stats, size_t firstLine) {
  if (firstLine == 1 && bytes.starts_with("\xEF\xBB\xBF")) bytes.remove_prefix(3);
  Reader reader(path, options, stats);
  switch (format) {
  case DataFormat::Tsv: reader.readTsv(bytes, firstLine); break;
  case DataFormat::Csv:
    assert(firstLine == 1 && "a CSV file is parsed whole: its header comes first");
    reader.readCsv(bytes);
    break;
  case DataFormat::Jsonl: reader.readJsonl(bytes, firstLine); break;
  case DataFormat::Auto: assert(false && "format resolved by the caller"); break;
  }
  return std::move(reader.examples);
}

std::string noExamplesReason(const ReadStats &stats) {
  return "no examples" +
         (stats.skipped ? fmt::format(" (all {} records were malformed and skipped)", stats.skipped) : std::string());
}

std::vector<RawExample> readExamples(const std::string &path, const ReadOptions &options, ReadStats *stats) {
  ReadStats local;
  ReadStats &st = stats ? *stats : local;
  st = ReadStats{};
  std::string bytes = readFile(path);
  std::vector<RawExample> examples = parseExamples(bytes, path, dataFormat(path, options.format), options, st, 1);
  if (examples.empty()) throw Error(noExamplesReason(st), SourceLoc{path, 0, 0});
  return examples;
}

LabelSet LabelSet::fromExamples(const std::vector<RawExample> &examples) {
  std::vector<std::string> names;
  for (const RawExample &e : examples) names.push_back(e.label);
  return fromNames(std::move(names));
}

LabelSet LabelSet::fromNames(std::vector<std::string> names) {
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());

  std::vector<std::pair<int64_t, std::string>> numeric;
  for (const std::string &n : names) {
    int64_t v = 0;
    if (!parseInt(n, v)) return LabelSet(std::move(names));
    numeric.emplace_back(v, n);
  }
  // Ties ("1" and "01") fall back to the text, keeping the order total.
  std::sort(numeric.begin(), numeric.end());
  for (size_t i = 0; i < names.size(); ++i) names[i] = std::move(numeric[i].second);
  return LabelSet(std::move(names));
}

int32_t LabelSet::index(const std::string &label) const {
  auto it = std::find(names_.begin(), names_.end(), label);
  if (it != names_.end()) return static_cast<int32_t>(it - names_.begin());
  // A data set can have thousands of classes; the message shows the first few.
  constexpr size_t kShown = 20;
  std::string known;
  for (size_t i = 0; i < std::min(kShown, names_.size()); ++i) known += (i ? ", " : "") + names_[i];
  if (names_.size() > kShown) known += fmt::format(", ... ({} more)", names_.size() - kShown);
  throw Error("unknown label '" + label + "'; the model knows" + (known.empty() ? " no labels" : ": " + known));
}

Vocabulary::Vocabulary(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
  // Vocabularies also come from checkpoint files, so this is a user error.
  if (tokens_.size() < 2 || tokens_[0] != "<pad>" || tokens_[1] != "<unk>")
    throw Error("a vocabulary must start with <pad> and <unk>");
  for (size_t i = 0; i < tokens_.size(); ++i)
    if (!ids_.emplace(tokens_[i], static_cast<int32_t>(i)).second)
      throw Error("token '" + tokens_[i] + "' appears twice in the vocabulary");
}

TokenCounts countTokens(const std::vector<RawExample> &examples) {
  TokenCounts counts;
  for (const RawExample &e : examples)
    for (std::string &t : tokenizeText(e.text)) ++counts[std::move(t)];
  return counts;
}

Vocabulary Vocabulary::build(const std::vector<RawExample> &examples, size_t maxSize, size_t minFreq) {
  return fromCounts(countTokens(examples), maxSize, minFreq);
}

Vocabulary Vocabulary::fromCounts(const TokenCounts &counts, size_t maxSize, size_t minFreq) {
  if (maxSize < 2) throw Error(fmt::format("vocabulary size must be at least 2 (<pad> and <unk>), got {}", maxSize));

  std::vector<std::pair<std::string, size_t>> kept;
  for (auto &[token, count] : counts)
    if (count >= minFreq) kept.emplace_back(token, count);
  // Sorting fully (not just by count) makes the result independent of the
  // hash map's iteration order.
  std::sort(kept.begin(), kept.end(), [](const auto &a, const auto &b) {
    return a.second != b.second ? a.second > b.second : a.first < b.first;
  });
  if (kept.size() > maxSize - 2) kept.resize(maxSize - 2);

  std::vector<std::string> tokens = {"<pad>", "<unk>"};
  for (auto &kv : kept) tokens.push_back(std::move(kv.first));
  return Vocabulary(std::move(tokens));
}

int32_t Vocabulary::id(const std::string &token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? 1 : it->second;
}

std::vector<int32_t> Vocabulary::encode(const std::string &text, size_t maxLen) const {
  std::vector<std::string> tokens = tokenizeText(text);
  if (maxLen > 0 && tokens.size() > maxLen) tokens.resize(maxLen);
  return encodeTokens(tokens);
}

std::vector<int32_t> Vocabulary::encodeTokens(const std::vector<std::string> &tokens) const {
  if (tokens.empty()) return {1};
  std::vector<int32_t> ids(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) ids[i] = id(tokens[i]);
  return ids;
}

std::string InputRecipe::str() const {
  std::string out;
  for (const DerivedInput &d : derived)
    out += fmt::format("{}{}=ngrams(n={},buckets={},hash=fnv1a64)", out.empty() ? "" : ";", d.name, d.n, d.buckets);
  return out;
}

std::vector<int32_t> ngramIds(const std::vector<std::string> &tokens, int64_t n, int64_t buckets) {
  assert(n >= 1 && buckets >= 2);
  auto fnv1a = [](const std::string &s) {
    uint64_t h = 14695981039346656037ull;
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
  };
  std::vector<uint64_t> hashes(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) hashes[i] = fnv1a(tokens[i]);
  std::vector<int32_t> ids(std::max<size_t>(1, tokens.size()), 0); // an empty text encodes as one <unk>
  size_t width = static_cast<size_t>(n);
  for (size_t end = width; end <= tokens.size(); ++end) {
    uint64_t h = hashes[end - width];
    for (size_t j = end - width + 1; j < end; ++j) h = h * 116049371ull + hashes[j];
    ids[end - 1] = static_cast<int32_t>(1 + h % static_cast<uint64_t>(buckets - 1));
  }
  return ids;
}

void appendEncoded(EncodedData &data, const std::string &text, int32_t label, const Vocabulary &vocab, size_t maxLen,
                   const InputRecipe &recipe) {
  std::vector<std::string> tokens = tokenizeText(text);
  if (maxLen > 0 && tokens.size() > maxLen) tokens.resize(maxLen);
  data.ids.push_back(vocab.encodeTokens(tokens));
  data.labels.push_back(label);
  data.derived.resize(recipe.derived.size());
  for (size_t i = 0; i < recipe.derived.size(); ++i)
    data.derived[i].push_back(ngramIds(tokens, recipe.derived[i].n, recipe.derived[i].buckets));
}

EncodedData encodeExamples(const std::vector<RawExample> &examples, const Vocabulary &vocab, const LabelSet &labels,
                           size_t maxLen, const InputRecipe &recipe) {
  // LabelSet::index is a linear search; a map keeps large label sets fast.
  std::unordered_map<std::string, int32_t> labelIds;
  for (size_t i = 0; i < labels.size(); ++i) labelIds.emplace(labels.names()[i], static_cast<int32_t>(i));
  EncodedData out;
  out.ids.reserve(examples.size());
  out.labels.reserve(examples.size());
  out.derived.resize(recipe.derived.size());
  for (auto &d : out.derived) d.reserve(examples.size());
  for (const RawExample &e : examples) {
    auto it = labelIds.find(e.label);
    appendEncoded(out, e.text, it != labelIds.end() ? it->second : labels.index(e.label), vocab, maxLen,
                  recipe); // index() throws
  }
  return out;
}

std::vector<size_t> splitOrder(size_t n, double validFraction, uint64_t seed, bool shuffle, size_t &nValid) {
  if (!(validFraction >= 0.0 && validFraction < 1.0))
    throw Error(fmt::format("validation fraction must be in [0, 1), got {}", validFraction));
  nValid = static_cast<size_t>(std::llround(validFraction * static_cast<double>(n)));
  if (n > 0 && nValid == n)
    throw Error(fmt::format("a validation fraction of {} holds out all {} examples, leaving none to train on",
                            validFraction, n));
  std::vector<size_t> order = identity(n);
  // A constant of its own, so that the split is not the same permutation as
  // the first epoch's order for the same seed.
  SplitMix64 rng(seed ^ 0xD1B54A32D192ED03ull);
  if (shuffle) fisherYates(order, rng);
  return order;
}

void splitExamples(const std::vector<RawExample> &all, double validFraction, uint64_t seed,
                   std::vector<RawExample> &train, std::vector<RawExample> &valid, bool shuffle) {
  size_t n = all.size(), nValid = 0;
  std::vector<size_t> order = splitOrder(n, validFraction, seed, shuffle, nValid);
  // Built aside and moved in: `train` or `valid` may be `all` itself.
  std::vector<RawExample> t, v;
  t.reserve(n - nValid);
  v.reserve(nValid);
  for (size_t i = 0; i < n; ++i) (i < n - nValid ? t : v).push_back(all[order[i]]);
  train = std::move(t);
  valid = std::move(v);
}

std::vector<size_t> epochOrder(size_t n, uint64_t seed, uint64_t epoch, bool shuffle) {
  std::vector<size_t> order = identity(n);
  if (!shuffle) return order;
  SplitMix64 rng(seed ^ (epoch * 0x9E3779B97F4A7C15ull));
  fisherYates(order, rng);
  return order;
}

size_t bucketLength(size_t n) {
  size_t step = n <= 64 ? 8 : n <= 128 ? 16 : n <= 256 ? 32 : 64;
  return std::max<size_t>(step, (n + step - 1) / step * step);
}

Batch makeBatch(const EncodedData &data, const std::vector<size_t> &order, size_t begin, size_t end,
                size_t minLength) {
  assert(begin < end && end <= order.size());
  assert(data.ids.size() == data.labels.size());
  size_t rows = end - begin, longest = std::max<size_t>(1, minLength);
  for (size_t i = begin; i < end; ++i) {
    assert(order[i] < data.ids.size());
    longest = std::max(longest, data.ids[order[i]].size());
  }
  longest = bucketLength(longest);
  Batch b;
  b.tokens = Tensor(ir::DType::I32, {static_cast<int64_t>(rows), static_cast<int64_t>(longest)});
  b.labels = Tensor(ir::DType::I32, {static_cast<int64_t>(rows)});
  auto tokens = b.tokens.i32();
  auto labels = b.labels.i32();
  for (size_t r = 0; r < rows; ++r) {
    const std::vector<int32_t> &ids = data.ids[order[begin + r]];
    std::copy(ids.begin(), ids.end(), tokens.begin() + static_cast<ptrdiff_t>(r * longest)); // rest stays 0
    labels[r] = data.labels[order[begin + r]];
  }
  for (const auto &perExample : data.derived) {
    Tensor t(ir::DType::I32, {static_cast<int64_t>(rows), static_cast<int64_t>(longest)});
    auto out = t.i32();
    for (size_t r = 0; r < rows; ++r) {
      const std::vector<int32_t> &ids = perExample[order[begin + r]];
      std::copy(ids.begin(), ids.end(), out.begin() + static_cast<ptrdiff_t>(r * longest));
    }
    b.derived.push_back(std::move(t));
  }
  return b;
}

std::map<std::string, Tensor> batchInputs(const Batch &batch, const InputRecipe &recipe) {
  assert(batch.derived.size() == recipe.derived.size());
  std::map<std::string, Tensor> inputs = {{recipe.tokens, batch.tokens}};
  for (size_t i = 0; i < recipe.derived.size(); ++i) inputs.emplace(recipe.derived[i].name, batch.derived[i]);
  return inputs;
}

} // namespace kiln::runtime
