//===- tests/unit/data_test.cpp - labelled text data for training ---------===//
//
// Each file format read from real files (quoting, CRLF, BOM, blank lines,
// numeric JSON labels), every kind of malformed record as an error located
// at its line and, with skipBad, as counted and reported problems; label
// ordering, vocabulary construction and encoding with exact ids; and the
// seeded split, epoch orders and padded batches checked value by value.
//
//===----------------------------------------------------------------------===//
#include "runtime/data.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <doctest/doctest.h>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <set>

using namespace kiln;
using namespace kiln::runtime;
namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxProblemsShown = 5; // ReadStats keeps the first five

/// A fresh directory under the system temp dir, removed at scope exit.
struct DataDir {
  fs::path path;
  DataDir() {
    std::string tmpl = (fs::temp_directory_path() / "kiln-data-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~DataDir() { fs::remove_all(path); }
  /// Writes `bytes` to `name` in the directory and returns its path.
  std::string file(const std::string &name, const std::string &bytes) const {
    std::string p = (path / name).string();
    std::ofstream(p, std::ios::binary) << bytes;
    return p;
  }
};

/// The error readExamples throws, or a failed check when it throws none.
Error readError(const std::string &path, const ReadOptions &options = {}) {
  try {
    readExamples(path, options);
  } catch (const Error &e) {
    return e;
  }
  FAIL("expected an error reading " << path);
  return Error("");
}

std::vector<RawExample> readSkipping(const std::string &path, ReadStats &stats) {
  ReadOptions o;
  o.skipBad = true;
  return readExamples(path, o, &stats);
}

RawExample ex(std::string label, std::string text) { return RawExample{std::move(label), std::move(text), 0}; }

std::vector<std::string> labelsOf(const std::vector<RawExample> &v) {
  std::vector<std::string> out;
  for (const RawExample &e : v) out.push_back(e.label);
  return out;
}

std::vector<size_t> linesOf(const std::vector<RawExample> &v) {
  std::vector<size_t> out;
  for (const RawExample &e : v) out.push_back(e.line);
  return out;
}

bool isPermutation(std::vector<size_t> v) {
  std::sort(v.begin(), v.end());
  for (size_t i = 0; i < v.size(); ++i)
    if (v[i] != i) return false;
  return true;
}

} // namespace

TEST_CASE("data: TSV with tabs in the text, CRLF, BOM and blank lines") {
  DataDir d;
  std::string p = d.file("a.tsv", "\xEF\xBB\xBFspam\tWin money\tnow\r\n\r\n  \nham\thello\n\nham\t\n 3 \tx");
  ReadStats stats;
  auto v = readExamples(p, {}, &stats);
  REQUIRE(v.size() == 4);
  CHECK(labelsOf(v) == std::vector<std::string>{"spam", "ham", "ham", "3"}); // BOM gone, label trimmed
  CHECK(v[0].text == "Win money\tnow");                                      // split at the first tab, \r gone
  CHECK(v[1].text == "hello");
  CHECK(v[2].text == "");
  CHECK(v[3].text == "x");
  CHECK(linesOf(v) == std::vector<size_t>{1, 4, 6, 7});
  CHECK(stats.records == 4);
  CHECK(stats.skipped == 0);
  CHECK(stats.problems.empty());
}

TEST_CASE("data: malformed TSV lines name their line, or are skipped and counted") {
  DataDir d;
  std::string p = d.file("bad.tsv", "a\tone\n\nno tab here\nb\ttwo\n\tno label\n");
  Error e = readError(p);
  CHECK(e.loc().file == p);
  CHECK(e.loc().line == 3);
  CHECK(formatError(e) == p + ":3:1: error: expected 'label<TAB>text' but the line has no tab\n");

  ReadStats stats;
  auto v = readSkipping(p, stats);
  CHECK(labelsOf(v) == std::vector<std::string>{"a", "b"});
  CHECK(stats.records == 2);
  CHECK(stats.skipped == 2);
  CHECK(stats.problems ==
        std::vector<std::string>{p + ":3: expected 'label<TAB>text' but the line has no tab", p + ":5: empty label"});

  // Only the first five problems are kept; all are counted.
  std::string many = "ok\tfine\n";
  for (int i = 0; i < 7; ++i) many += "bad\n";
  p = d.file("many.tsv", many);
  v = readSkipping(p, stats);
  CHECK(v.size() == 1);
  CHECK(stats.skipped == 7);
  REQUIRE(stats.problems.size() == 5);
  CHECK(stats.problems[4].starts_with(p + ":6: "));
}

TEST_CASE("data: invalid UTF-8 is a malformed record") {
  DataDir d;
  std::string p = d.file("u.tsv", "a\tfine\nb\tbad \xC3(\n");
  Error e = readError(p);
  CHECK(e.loc().line == 2);
  CHECK(e.message() == "invalid UTF-8 in the text at byte 4");

  p = d.file("l.tsv", "a\tfine\n\nx\xFF\ttext\n");
  e = readError(p);
  CHECK(e.loc().line == 3);
  CHECK(e.message() == "invalid UTF-8 in the label at byte 1");

  // Overlong encodings and surrogates are invalid too.
  p = d.file("o.tsv", "a\t\xC0\xAF\nb\t\xED\xA0\x80\nc\t\xE2\x82\xAC ok\n");
  ReadStats stats;
  auto v = readSkipping(p, stats);
  CHECK(labelsOf(v) == std::vector<std::string>{"c"});
  CHECK(stats.skipped == 2);

  p = d.file("u.csv", "label,text\na,\"multi\nline\"\nb,\"\xF0\x9F\x98\"\n");
  CHECK(readError(p).loc().line == 4);
}

TEST_CASE("data: invalid UTF-8 is reported at its first byte, in every format") {
  DataDir d;
  // Each text has one ill-formed sequence; its offset within the text.
  const std::vector<std::pair<std::string, size_t>> texts = {
      {"ok \xC0\xAF", 3},           // overlong '/'
      {"\xE0\x80\xAF", 0},          // overlong, 3 bytes
      {"caf\xC3\xA9 \xED\xA0\x80", 6}, // U+D800 encoded, after an é
      {"x\xF4\x90\x80\x80", 1},      // U+110000
      {"\xF8\x88\x80\x80\x80", 0},   // a 5-byte form
      {"cut \xE4\xB8", 4},           // truncated at the end of the text
      {"\xF0\x9F\x99 ", 0},         // truncated before a space
      {"ab\x80", 2},                 // stray continuation byte
  };
  std::string tsv, csv = "label,text\n";
  for (const auto &[text, at] : texts) {
    tsv += "a\t" + text + "\n";
    csv += "a,\"" + text + "\"\n";
  }
  for (const std::string &p : {d.file("bad.tsv", tsv), d.file("bad.csv", csv)}) {
    ReadStats stats;
    CHECK_THROWS_AS(readSkipping(p, stats), Error); // every record is bad: no examples
    REQUIRE(stats.skipped == texts.size());
    for (size_t i = 0; i < kMaxProblemsShown; ++i) {
      size_t line = i + 1 + (p.ends_with(".csv") ? 1 : 0);
      CHECK(stats.problems[i] == fmt::format("{}:{}: invalid UTF-8 in the text at byte {}", p, line, texts[i].second));
    }
  }
  // Past the five kept problems: each alone.
  for (size_t i = kMaxProblemsShown; i < texts.size(); ++i) {
    Error e = readError(d.file("one.tsv", "ok\tfine\na\t" + texts[i].first + "\n"));
    CHECK(e.loc().line == 2);
    CHECK(e.message() == fmt::format("invalid UTF-8 in the text at byte {}", texts[i].second));
  }
  // The label is checked too (after trimming), and a JSON string is checked
  // by the JSON parser, which names the byte within the line.
  CHECK(readError(d.file("l.tsv", "\xED\xBF\xBF\ttext\n")).message() == "invalid UTF-8 in the label at byte 0");
  CHECK(readError(d.file("l.csv", "label,text\n xy\xC1\x81 ,t\n")).message() ==
        "invalid UTF-8 in the label at byte 2");
  Error e = readError(d.file("j.jsonl", "{\"label\":\"a\",\"text\":\"ok\"}\n{\"label\":\"a\",\"text\":\"x\xF4\x90\x80\x80\"}\n"));
  CHECK(e.loc().line == 2);
  CHECK(e.message() == "invalid JSON at byte 22: invalid UTF-8");
}

TEST_CASE("data: CSV quoting, column order, CRLF and BOM") {
  DataDir d;
  std::string p = d.file("a.csv", "\xEF\xBB\xBF"
                                  "id,Text,label\r\n"
                                  "1,\"hello, \"\"world\"\"\",pos\r\n"
                                  "2,\"two\r\nlines\",neg\r\n"
                                  "\r\n"
                                  "3,plain,\" pos \"\r\n"
                                  "4,,neg");
  ReadStats stats;
  auto v = readExamples(p, {}, &stats);
  REQUIRE(v.size() == 4);
  CHECK(labelsOf(v) == std::vector<std::string>{"pos", "neg", "pos", "neg"});
  CHECK(v[0].text == "hello, \"world\"");
  CHECK(v[1].text == "two\r\nlines"); // embedded line ends are kept as they are
  CHECK(v[2].text == "plain");
  CHECK(v[3].text == "");
  CHECK(linesOf(v) == std::vector<size_t>{2, 3, 6, 7}); // a record's line is where it starts
  CHECK(stats.records == 4);
}

TEST_CASE("data: malformed CSV") {
  DataDir d;
  SUBCASE("wrong field count") {
    std::string p = d.file("f.csv", "label,text\na,\"x\ny\"\nb,one,two\nc\nd,ok\n");
    Error e = readError(p);
    CHECK(formatError(e) == p + ":4:1: error: expected 2 fields as in the header, found 3\n");
    ReadStats stats;
    auto v = readSkipping(p, stats);
    CHECK(labelsOf(v) == std::vector<std::string>{"a", "d"});
    CHECK(linesOf(v) == std::vector<size_t>{2, 6});
    CHECK(stats.skipped == 2);
    CHECK(stats.problems == std::vector<std::string>{p + ":4: expected 2 fields as in the header, found 3",
                                                     p + ":5: expected 2 fields as in the header, found 1"});
  }
  SUBCASE("text after a closing quote") {
    std::string p = d.file("q.csv", "label,text\na,ok\nb,\"x\"y\nc,ok\n");
    Error e = readError(p);
    CHECK(e.loc().line == 3);
    CHECK(e.message() == "unexpected character after a closing quote");
    ReadStats stats;
    CHECK(labelsOf(readSkipping(p, stats)) == std::vector<std::string>{"a", "c"});
    CHECK(stats.skipped == 1);
  }
  SUBCASE("an unterminated quote is an error even with skipBad") {
    std::string p = d.file("u.csv", "label,text\na,ok\nb,\"never\nclosed\nc,ok\n");
    Error e = readError(p);
    CHECK(formatError(e) == p + ":3:1: error: unterminated quoted field\n");
    ReadOptions o;
    o.skipBad = true;
    CHECK(readError(p, o).loc().line == 3);
  }
  SUBCASE("header without the needed columns") {
    std::string p = d.file("h.csv", "\nid,label,body\n1,a,b\n");
    Error e = readError(p);
    CHECK(e.loc().line == 2);
    CHECK(e.message() == "the CSV header must name a 'label' and a 'text' column; found: id, label, body");
    p = d.file("h2.csv", "label,text,LABEL\na,b,c\n");
    CHECK(readError(p).message() == "the header names column 'label' twice");
  }
  SUBCASE("empty label") {
    std::string p = d.file("e.csv", "label,text\n a ,x\n  ,y\n");
    CHECK(formatError(readError(p)) == p + ":3:1: error: empty label\n");
  }
}

TEST_CASE("data: JSON Lines") {
  DataDir d;
  std::string p = d.file("a.jsonl", "\xEF\xBB\xBF{\"label\": \"spam\", \"text\": \"Win\\tbig\", \"id\": 7}\r\n"
                                    "\n"
                                    "{\"text\": \"caf\\u00e9\", \"label\": 1}\n"
                                    "  {\"label\": -20, \"text\": \"\"}  \n");
  auto v = readExamples(p);
  REQUIRE(v.size() == 3);
  CHECK(labelsOf(v) == std::vector<std::string>{"spam", "1", "-20"});
  CHECK(v[0].text == "Win\tbig");
  CHECK(v[1].text == "caf\xC3\xA9");
  CHECK(linesOf(v) == std::vector<size_t>{1, 3, 4});

  // .json is read as JSON Lines as well.
  CHECK(readExamples(d.file("b.json", "{\"label\":\"x\",\"text\":\"y\"}")).size() == 1);

  // Line 1 is good; badLines[i] is line i + 2.
  const std::string ok = "{\"label\":\"ok\",\"text\":\"t\"}\n";
  const std::vector<std::string> badLines = {
      "{\"label\":\"a\",\"text\":\"t\"",     // 2: not JSON
      "\"just a string\"",                   // 3
      "{\"text\":\"t\"}",                    // 4
      "{\"label\":true,\"text\":\"t\"}",     // 5
      "{\"label\":1.5,\"text\":\"t\"}",      // 6
      "{\"label\":\"a\"}",                   // 7
      "{\"label\":\"a\",\"text\":[]}",       // 8
      "{\"label\":\"a\",\"text\":\"\xFF\"}", // 9: the JSON parser rejects invalid UTF-8
      "{\"label\":\" \",\"text\":\"t\"}",    // 10
  };
  std::string bad = ok;
  for (const std::string &l : badLines) bad += l + "\n";
  p = d.file("bad.jsonl", bad);
  Error e = readError(p);
  CHECK(e.loc().line == 2);
  CHECK(e.message().starts_with("invalid JSON at byte "));
  ReadStats stats;
  v = readSkipping(p, stats);
  CHECK(labelsOf(v) == std::vector<std::string>{"ok"});
  CHECK(stats.records == 1);
  CHECK(stats.skipped == 9);
  REQUIRE(stats.problems.size() == 5);
  CHECK(stats.problems[1] == p + ":3: expected a JSON object, found string");
  CHECK(stats.problems[2] == p + ":4: missing \"label\"");
  CHECK(stats.problems[3] == p + ":5: \"label\" must be a string or an integer, found bool");
  CHECK(stats.problems[4] == p + ":6: \"label\" must be a string or an integer, found a fractional number");

  // The rest, each alone after the good line and blank lines.
  for (auto [line, message] : std::vector<std::pair<int, std::string>>{{7, "missing \"text\""},
                                                                       {8, "\"text\" must be a string, found array"},
                                                                       {9, "invalid JSON at byte "},
                                                                       {10, "empty label"}}) {
    e = readError(d.file("one.jsonl", ok + std::string(line - 2, '\n') + badLines[line - 2] + "\n"));
    CHECK(e.loc().line == line);
    CHECK(e.message().starts_with(message));
  }

  // A JSON array is not JSON Lines; say so rather than fail on every line.
  e = readError(d.file("arr.json", "\n[\n  {\"label\": \"a\", \"text\": \"b\"}\n]\n"));
  CHECK(e.loc().line == 2);
  CHECK(e.message() == "expected JSON Lines (one object per line), found a JSON array");
}

TEST_CASE("data: files without examples, missing files and formats") {
  DataDir d;
  for (const char *name : {"e.tsv", "e.csv", "e.jsonl"}) {
    Error e = readError(d.file(name, ""));
    CHECK(e.message() == "no examples");
    CHECK(formatError(e) == (d.path / name).string() + ": error: no examples\n");
  }
  CHECK(readError(d.file("blank.tsv", "\xEF\xBB\xBF\n \r\n\n")).message() == "no examples");
  CHECK(readError(d.file("header.csv", "label,text\r\n")).message() == "no examples");
  ReadStats stats;
  ReadOptions skip;
  skip.skipBad = true;
  CHECK(readError(d.file("allbad.tsv", "x\ny\n"), skip).message() ==
        "no examples (all 2 records were malformed and skipped)");

  std::string missing = (d.path / "nope.tsv").string();
  CHECK(readError(missing).message() == "cannot open '" + missing + "': No such file or directory");
  fs::create_directory(d.path / "dir.tsv");
  CHECK(readError((d.path / "dir.tsv").string()).message() ==
        "cannot read '" + (d.path / "dir.tsv").string() + "': is a directory");

  std::string txt = d.file("data.txt", "a\tb\n");
  CHECK(readError(txt).message().find("cannot tell the format of '" + txt + "'") == 0);
  ReadOptions tsv;
  tsv.format = DataFormat::Tsv;
  CHECK(readExamples(txt, tsv).size() == 1);
  CHECK(readExamples(d.file("UPPER.TSV", "a\tb\n")).size() == 1);
  // A forced format wins over the extension.
  ReadOptions csv;
  csv.format = DataFormat::Csv;
  auto v = readExamples(d.file("really-csv.tsv", "text,label\nhi,a\n"), csv);
  CHECK(labelsOf(v) == std::vector<std::string>{"a"});
}

TEST_CASE("data: label sets") {
  LabelSet alpha = LabelSet::fromExamples({ex("pos", ""), ex("neg", ""), ex("pos", ""), ex("Neutral", "")});
  CHECK(alpha.names() == std::vector<std::string>{"Neutral", "neg", "pos"});
  CHECK(alpha.index("neg") == 1);
  CHECK(alpha.index("pos") == 2);
  CHECK_THROWS_WITH_AS(alpha.index("posi"), "unknown label 'posi'; the model knows: Neutral, neg, pos", Error);

  LabelSet numeric = LabelSet::fromExamples({ex("10", ""), ex("9", ""), ex("-1", ""), ex("0", ""), ex("9", "")});
  CHECK(numeric.names() == std::vector<std::string>{"-1", "0", "9", "10"});
  CHECK(numeric.index("10") == 3);
  CHECK_THROWS_WITH_AS(LabelSet().index("a"), "unknown label 'a'; the model knows no labels", Error);

  // One non-integer label makes the whole set sort as text.
  LabelSet mixed = LabelSet::fromExamples({ex("10", ""), ex("9", ""), ex("x", ""), ex("2.5", "")});
  CHECK(mixed.names() == std::vector<std::string>{"10", "2.5", "9", "x"});
  CHECK(LabelSet::fromExamples({ex("01", ""), ex("1", ""), ex("2", "")}).names() ==
        std::vector<std::string>{"01", "1", "2"});
  CHECK(LabelSet::fromExamples({ex("99999999999999999999", ""), ex("3", "")}).names() ==
        std::vector<std::string>{"3", "99999999999999999999"}); // too big for int64: text order

  std::vector<RawExample> many;
  for (int i = 0; i < 25; ++i) many.push_back(ex(std::to_string(i), ""));
  CHECK_THROWS_WITH_AS(LabelSet::fromExamples(many).index("x"),
                       doctest::Contains("the model knows: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, "
                                         "16, 17, 18, 19, ... (5 more)"),
                       Error);
}

TEST_CASE("data: vocabulary") {
  std::vector<RawExample> data = {ex("a", "the cat, the dog"), ex("b", "The bird and THE cat"), ex("a", "zebra apple")};
  // Counts: the 4, cat 2, and/apple/bird/dog/zebra 1.
  Vocabulary full = Vocabulary::build(data, 100);
  CHECK(full.tokens() ==
        std::vector<std::string>{"<pad>", "<unk>", "the", "cat", "and", "apple", "bird", "dog", "zebra"});
  CHECK(Vocabulary::build(data, 5).tokens() == std::vector<std::string>{"<pad>", "<unk>", "the", "cat", "and"});
  CHECK(Vocabulary::build(data, 100, 2).tokens() == std::vector<std::string>{"<pad>", "<unk>", "the", "cat"});
  CHECK(Vocabulary::build(data, 100, 5).size() == 2);
  CHECK(Vocabulary::build(data, 2).size() == 2);
  CHECK_THROWS_WITH_AS(Vocabulary::build(data, 1), doctest::Contains("at least 2"), Error);

  CHECK(full.id("<pad>") == 0);
  CHECK(full.id("cat") == 3);
  CHECK(full.id("unicorn") == 1);
  CHECK(full.encode("The CAT saw a unicorn!") == std::vector<int32_t>{2, 3, 1, 1, 1});
  CHECK(full.encode("The CAT saw a unicorn!", 2) == std::vector<int32_t>{2, 3});
  CHECK(full.encode("the cat", 10) == std::vector<int32_t>{2, 3});
  CHECK(full.encode("") == std::vector<int32_t>{1});
  CHECK(full.encode("?! ...", 3) == std::vector<int32_t>{1});

  Vocabulary loaded({"<pad>", "<unk>", "x"});
  CHECK(loaded.id("x") == 2);
  CHECK(Vocabulary().size() == 2);
  CHECK_THROWS_AS(Vocabulary({"<unk>", "<pad>"}), Error);
  CHECK_THROWS_WITH_AS(Vocabulary({"<pad>", "<unk>", "x", "x"}), "token 'x' appears twice in the vocabulary", Error);

  LabelSet labels = LabelSet::fromExamples(data);
  EncodedData enc = encodeExamples(data, full, labels, 3);
  CHECK(enc.labels == std::vector<int32_t>{0, 1, 0});
  CHECK(enc.ids == std::vector<std::vector<int32_t>>{{2, 3, 2}, {2, 6, 4}, {8, 5}});
  CHECK_THROWS_WITH_AS(encodeExamples({ex("c", "x")}, full, labels, 0), "unknown label 'c'; the model knows: a, b",
                       Error);
}

TEST_CASE("data: texts in every script have tokens, so they are not all <unk>") {
  DataDir d;
  std::string p = d.file("m.tsv", "ar\tمرحبا بالعالم\nhi\tनमस्ते दुनिया\nemoji\t🙂🙂 👍\nth\tสวัสดี\n"
                                  "pl\tŁÓDŹ łódź\nru\tЁлка\n");
  std::vector<RawExample> data = readExamples(p);
  Vocabulary v = Vocabulary::build(data, 100);
  // łódź, ส and 🙂 twice each; ties in byte order.
  CHECK(v.tokens() == std::vector<std::string>{"<pad>", "<unk>", "łódź", "ส", "🙂", "ёлка", "بالعالم", "مرحبا", "दुनिया",
                                               "नमस्ते", "ดี", "วั", "👍"});
  CHECK(v.encode("بالعالم 🙂") == std::vector<int32_t>{6, 4});
  CHECK(v.encode("ЁЛКА") == std::vector<int32_t>{5});
  CHECK(v.encode("ŁÓDŹ") == std::vector<int32_t>{2});
  CHECK(v.encode("דבר") == std::vector<int32_t>{1}); // a word the vocabulary lacks is <unk>, not nothing
}

TEST_CASE("data: train/validation split") {
  std::vector<RawExample> all;
  for (size_t i = 0; i < 10; ++i) all.push_back(RawExample{"l", "t" + std::to_string(i), i});
  auto split = [&](double f, uint64_t seed) {
    std::vector<RawExample> train, valid;
    splitExamples(all, f, seed, train, valid);
    std::vector<size_t> lines = linesOf(train), v = linesOf(valid);
    lines.insert(lines.end(), v.begin(), v.end());
    CHECK(isPermutation(lines)); // every example lands in exactly one part
    return std::make_pair(linesOf(train), linesOf(valid));
  };
  CHECK(split(0.2, 1).first.size() == 8);
  CHECK(split(0.2, 1).second.size() == 2);
  CHECK(split(0.25, 1).second.size() == 3); // round(2.5) rounds away from zero
  CHECK(split(0.0, 1).second.empty());
  CHECK(split(0.94, 1).second.size() == 9);
  CHECK(split(0.2, 7) == split(0.2, 7));
  CHECK(split(0.2, 7) != split(0.2, 8));
  CHECK(split(0.0, 7).first != linesOf(all)); // shuffled even without a validation part

  for (double bad : {1.0, -0.1, std::nan("")})
    CHECK_THROWS_WITH_AS(split(bad, 1), doctest::Contains("validation fraction must be in [0, 1)"), Error);

  // The output may be the input itself.
  std::vector<RawExample> data = all, valid;
  splitExamples(data, 0.3, 5, data, valid);
  CHECK(data.size() == 7);
  CHECK(valid.size() == 3);
  CHECK(std::make_pair(linesOf(data), linesOf(valid)) == split(0.3, 5));
}

TEST_CASE("data: epoch orders") {
  CHECK(epochOrder(5, 1, 0, false) == std::vector<size_t>{0, 1, 2, 3, 4});
  CHECK(epochOrder(5, 1, 3, false) == std::vector<size_t>{0, 1, 2, 3, 4});
  CHECK(epochOrder(0, 1, 0, true).empty());
  CHECK(epochOrder(1, 1, 0, true) == std::vector<size_t>{0});

  std::vector<size_t> a = epochOrder(100, 42, 0, true);
  CHECK(isPermutation(a));
  CHECK(a == epochOrder(100, 42, 0, true));
  CHECK(a != epochOrder(100, 42, 1, true));
  CHECK(a != epochOrder(100, 43, 0, true));
  CHECK(epochOrder(100, 42, 1, true) != epochOrder(100, 42, 2, true));
  CHECK(isPermutation(epochOrder(100, 42, 7, true)));

  // SplitMix64 and Fisher-Yates are fixed, so these orders are the same with
  // every compiler and standard library; a change here changes every run.
  // (Computed by an independent Python implementation of the same steps.)
  CHECK(epochOrder(8, 42, 0, true) == std::vector<size_t>{3, 1, 6, 2, 4, 0, 7, 5});
  CHECK(epochOrder(8, 42, 3, true) == std::vector<size_t>{1, 2, 3, 0, 6, 7, 5, 4});

  // Every position is reached: over many seeds, element 0 lands everywhere.
  std::set<size_t> where;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    auto o = epochOrder(6, seed, 0, true);
    where.insert(size_t(std::find(o.begin(), o.end(), 0) - o.begin()));
  }
  CHECK(where.size() == 6);
}

TEST_CASE("data: batches are padded to the bucket of their longest example") {
  EncodedData data;
  data.ids = {{5}, {2, 3, 4}, {7, 8}, {9, 9, 9, 9}, std::vector<int32_t>(70, 6)};
  data.labels = {0, 1, 2, 1, 0};
  std::vector<size_t> order = {2, 0, 1, 3, 4};

  Batch b = makeBatch(data, order, 0, 3);
  CHECK(b.tokens.typeStr() == "i32[3,8]");
  std::vector<int32_t> want(24, 0);
  for (auto [at, id] : std::vector<std::pair<int, int32_t>>{{0, 7}, {1, 8}, {8, 5}, {16, 2}, {17, 3}, {18, 4}})
    want[static_cast<size_t>(at)] = id;
  CHECK(std::vector<int32_t>(b.tokens.i32().begin(), b.tokens.i32().end()) == want);
  CHECK(b.labels.typeStr() == "i32[3]");
  CHECK(std::vector<int32_t>(b.labels.i32().begin(), b.labels.i32().end()) == std::vector<int32_t>{2, 0, 1});

  b = makeBatch(data, order, 3, 4);
  CHECK(b.tokens.typeStr() == "i32[1,8]");
  CHECK(b.labels.i32()[0] == 1);

  b = makeBatch(data, order, 4, 5); // 70 tokens: the next multiple of 16
  CHECK(b.tokens.typeStr() == "i32[1,80]");
  CHECK(b.tokens.i32()[69] == 6);
  CHECK(b.tokens.i32()[70] == 0);
}

TEST_CASE("data: bucket lengths") {
  // Multiples of 8 up to 64, of 16 up to 128, of 32 up to 256, of 64 beyond:
  // 16 lengths cover 1..256.
  CHECK(bucketLength(0) == 8);
  CHECK(bucketLength(1) == 8);
  CHECK(bucketLength(8) == 8);
  CHECK(bucketLength(9) == 16);
  CHECK(bucketLength(64) == 64);
  CHECK(bucketLength(65) == 80);
  CHECK(bucketLength(128) == 128);
  CHECK(bucketLength(129) == 160);
  CHECK(bucketLength(256) == 256);
  CHECK(bucketLength(257) == 320);
  std::set<size_t> lengths;
  for (size_t n = 1; n <= 256; ++n) {
    size_t b = bucketLength(n);
    CHECK(b >= n);
    lengths.insert(b);
  }
  CHECK(lengths.size() == 16);
}

TEST_CASE("data: hashed n-gram ids of the token strings") {
  // The ids are part of what a checkpoint means, so they are pinned: the
  // values were computed by an independent Python implementation of the
  // documented hash (FNV-1a 64 per token, h = h * 116049371 + next,
  // 1 + h mod (buckets - 1)).
  CHECK(ngramIds({"free", "cruise", "now"}, 2, 1000) == std::vector<int32_t>{0, 357, 465});
  CHECK(ngramIds({"free", "cruise", "now"}, 3, 1000) == std::vector<int32_t>{0, 0, 112});
  CHECK(ngramIds({"cruise", "free"}, 2, 1000) == std::vector<int32_t>{0, 925}); // order matters
  CHECK(ngramIds({"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", "\xd0\xbc\xd0\xb8\xd1\x80"}, 2, 1000) ==
        std::vector<int32_t>{0, 698}); // UTF-8 bytes
  CHECK(ngramIds({}, 2, 1000) == std::vector<int32_t>{0}); // an empty text is one <unk> token
  CHECK(ngramIds({"one"}, 2, 1000) == std::vector<int32_t>{0});
  // Ids stay in 1..buckets-1 where a full n-gram ends.
  std::vector<std::string> many;
  for (int i = 0; i < 500; ++i) many.push_back(fmt::format("w{}", i % 37));
  for (int64_t buckets : {2, 3, 97}) {
    std::vector<int32_t> ids = ngramIds(many, 2, buckets);
    CHECK(ids[0] == 0);
    for (size_t i = 1; i < ids.size(); ++i) {
      CHECK(ids[i] >= 1);
      CHECK(ids[i] < buckets);
    }
  }
}

TEST_CASE("data: derived inputs are encoded from the cut text and padded with their tokens") {
  Vocabulary vocab({"<pad>", "<unk>", "free", "cruise"});
  InputRecipe recipe;
  recipe.tokens = "tokens";
  recipe.derived = {{"pairs", 2, 1000}, {"triples", 3, 50}};
  CHECK(recipe.str() == "pairs=ngrams(n=2,buckets=1000,hash=fnv1a64);triples=ngrams(n=3,buckets=50,hash=fnv1a64)");
  EncodedData data;
  // "now" is not in the vocabulary, but its pairs are still told apart.
  appendEncoded(data, "Free cruise NOW!", 1, vocab, 0, recipe);
  appendEncoded(data, "free cruise now and more", 0, vocab, 2, recipe); // cut to 2 tokens first
  REQUIRE(data.derived.size() == 2);
  CHECK(data.ids[0] == std::vector<int32_t>{2, 3, 1});
  CHECK(data.derived[0][0] == std::vector<int32_t>{0, 357, 465});
  CHECK(data.derived[1][0] == ngramIds({"free", "cruise", "now"}, 3, 50));
  CHECK(data.ids[1] == std::vector<int32_t>{2, 3});
  CHECK(data.derived[0][1] == std::vector<int32_t>{0, 357});
  Batch b = makeBatch(data, {1, 0}, 0, 2);
  REQUIRE(b.derived.size() == 2);
  CHECK(b.tokens.shape() == std::vector<int64_t>{2, 8}); // bucketLength(3)
  CHECK(b.derived[0].shape() == b.tokens.shape());
  std::vector<int32_t> pairs(b.derived[0].i32().begin(), b.derived[0].i32().end());
  CHECK(pairs == std::vector<int32_t>{0, 357, 0, 0, 0, 0, 0, 0, 0, 357, 465, 0, 0, 0, 0, 0});
  std::map<std::string, Tensor> inputs = batchInputs(b, recipe);
  CHECK(inputs.size() == 3);
  CHECK(inputs.count("tokens"));
  CHECK(inputs.count("pairs"));
  CHECK(inputs.count("triples"));
}
