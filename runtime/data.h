//===- runtime/data.h - labelled text data for training ---------*- C++ -*-===//
//
// Reading labelled text (TSV `label<TAB>text`, CSV with a header naming
// `label` and `text` columns, JSON Lines with "label"/"text" fields; chosen by
// extension .tsv/.csv/.jsonl/.json, or forced), a vocabulary built from
// training texts, label sets, encoding to token ids with truncation, a seeded
// train/validation split and seeded shuffled batching with padding.
// Malformed lines and invalid UTF-8 are kiln::Error naming file and line, or
// are skipped and counted when the caller asks.
//
//===----------------------------------------------------------------------===//
#pragma once

#include "ir/graph.h"
#include "runtime/tensor.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kiln::runtime {

enum class DataFormat { Auto, Tsv, Csv, Jsonl };

struct RawExample {
  std::string label;
  std::string text;
  size_t line = 0; ///< 1-based line (record start) in the file
};

struct ReadOptions {
  DataFormat format = DataFormat::Auto;
  /// Skip malformed records instead of failing; they are counted in ReadStats.
  bool skipBad = false;
};

struct ReadStats {
  size_t records = 0;
  size_t skipped = 0;
  /// The first few problems as `file:line: message`, for a warning.
  std::vector<std::string> problems;
};

/// The whole file (also a pipe); kiln::Error "cannot open 'PATH': ..." when
/// it cannot be read.
std::string readFile(const std::string &path);

/// Reads every example of a file. Throws kiln::Error (`file:line: ...`) on the
/// first bad record unless options.skipBad; an empty result is an error.
std::vector<RawExample> readExamples(const std::string &path, const ReadOptions &options = {},
                                     ReadStats *stats = nullptr);

/// The format a file is read as: `forced`, or for Auto the one its
/// extension names (kiln::Error for another extension).
DataFormat dataFormat(const std::string &path, DataFormat forced);

/// The examples of `bytes`, a whole file or (TSV and JSON Lines only) a run
/// of its lines whose first is line firstLine, as readExamples reads them;
/// none is not an error here. `path` is for messages.
std::vector<RawExample> parseExamples(std::string_view bytes, const std::string &path, DataFormat format,
                                      const ReadOptions &options, ReadStats &stats, size_t firstLine = 1);

/// "no examples", and why when every record was skipped.
std::string noExamplesReason(const ReadStats &stats);

/// Label names <-> class indices. Indices follow sorted name order, so the
/// same data always gives the same mapping.
class LabelSet {
public:
  static LabelSet fromExamples(const std::vector<RawExample> &examples);
  /// The set of `names` (repeats allowed), in the order above.
  static LabelSet fromNames(std::vector<std::string> names);
  explicit LabelSet(std::vector<std::string> names = {}) : names_(std::move(names)) {}
  /// Index of a label; kiln::Error for a label the set does not know.
  int32_t index(const std::string &label) const;
  const std::vector<std::string> &names() const { return names_; }
  size_t size() const { return names_.size(); }

private:
  std::vector<std::string> names_;
};

/// How often each token occurs in the examples' texts.
using TokenCounts = std::unordered_map<std::string, size_t>;
TokenCounts countTokens(const std::vector<RawExample> &examples);

/// Token <-> id. Id 0 is `<pad>`, 1 is `<unk>`; the rest are the most frequent
/// training tokens (ties broken alphabetically) with at least minFreq uses,
/// up to maxSize ids in total.
class Vocabulary {
public:
  static Vocabulary build(const std::vector<RawExample> &examples, size_t maxSize, size_t minFreq = 1);
  /// The same from token counts (for a data-parallel run: the processes'
  /// counts added up).
  static Vocabulary fromCounts(const TokenCounts &counts, size_t maxSize, size_t minFreq = 1);
  explicit Vocabulary(std::vector<std::string> tokens = {"<pad>", "<unk>"});
  int32_t id(const std::string &token) const; ///< 1 for unknown tokens
  const std::vector<std::string> &tokens() const { return tokens_; }
  size_t size() const { return tokens_.size(); }
  /// Tokenizes (runtime/text.h) and maps to ids, keeping the first maxLen
  /// tokens when maxLen > 0. A text without tokens becomes {<unk>} so that
  /// every example has at least one unmasked position.
  std::vector<int32_t> encode(const std::string &text, size_t maxLen = 0) const;
  /// The ids of already tokenized (and cut) text, {<unk>} for none.
  std::vector<int32_t> encodeTokens(const std::vector<std::string> &tokens) const;

private:
  std::vector<std::string> tokens_;
  std::map<std::string, int32_t> ids_;
};

/// An input of the model that the data pipeline computes from a text's
/// tokens, as the model declares it (docs/DSL.md, "Derived inputs"):
/// `pairs: i32[B, T] = ngrams(tokens, n=2, buckets=N)`. Position t holds
/// the hashed id (1..buckets-1) of the n tokens ending at t, and 0 where
/// fewer than n tokens end there and in padding.
struct DerivedInput {
  std::string name;
  int64_t n = 2;
  int64_t buckets = 2;
};

/// Which inputs of a model the pipeline fills and how: the first input
/// takes the token ids, each derived input its n-grams.
struct InputRecipe {
  std::string tokens = "tokens";
  std::vector<DerivedInput> derived;
  /// `pairs=ngrams(n=2,buckets=100000,hash=fnv1a64)` per derived input,
  /// separated by ';': what a checkpoint records (config "inputs"), so that
  /// a model compiled later against it must hash the same way.
  std::string str() const;
};

/// The recipe of graph g's inputs (from the attributes the frontend puts
/// on derived inputs); kiln::Error for an input that is neither the
/// token ids nor derived. Defined with the other code that needs a graph
/// (runtime/trainer.cpp).
InputRecipe inputRecipe(const ir::Graph &g);

/// The n-gram ids of a text's tokens for one derived input (see
/// DerivedInput): each token's 64-bit FNV-1a hash of its UTF-8 bytes,
/// combined as fastText combines word hashes (h = h * 116049371 + next),
/// then 1 + h mod (buckets - 1). The token strings are hashed, not their
/// vocabulary ids, so n-grams of rare words that the vocabulary maps to
/// <unk> are still told apart.
std::vector<int32_t> ngramIds(const std::vector<std::string> &tokens, int64_t n, int64_t buckets);

/// Encoded examples ready for batching.
struct EncodedData {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int32_t> labels;
  /// Per InputRecipe::derived entry, per example: its ids (as long as the
  /// example's token ids).
  std::vector<std::vector<std::vector<int32_t>>> derived;
};

EncodedData encodeExamples(const std::vector<RawExample> &examples, const Vocabulary &vocab, const LabelSet &labels,
                           size_t maxLen, const InputRecipe &recipe = {});

/// Appends one text (label `label`) to data, encoded as encodeExamples does.
void appendEncoded(EncodedData &data, const std::string &text, int32_t label, const Vocabulary &vocab, size_t maxLen,
                   const InputRecipe &recipe);

/// The permutation splitExamples uses on n examples: its first n - nValid
/// entries are the training examples' indices, the rest the validation
/// examples'. kiln::Error for a fraction outside [0, 1) or one that leaves
/// nothing to train on.
std::vector<size_t> splitOrder(size_t n, double validFraction, uint64_t seed, bool shuffle, size_t &nValid);

/// Splits off a validation part: a seeded shuffle (none without
/// `shuffle`: the file's order), then the last round(fraction * n)
/// examples go to `valid`.
void splitExamples(const std::vector<RawExample> &all, double validFraction, uint64_t seed,
                   std::vector<RawExample> &train, std::vector<RawExample> &valid, bool shuffle = true);

struct Batch {
  Tensor tokens; ///< i32[B,T], padded with 0 to the longest example of the batch
  Tensor labels; ///< i32[B]
  std::vector<Tensor> derived; ///< per EncodedData::derived entry, i32[B,T] padded with 0
};

/// The model's inputs for a batch: the token ids and each derived input, by name.
std::map<std::string, Tensor> batchInputs(const Batch &batch, const InputRecipe &recipe);

/// The order in which examples are visited in `epoch`: a permutation seeded
/// by (seed, epoch), or 0..n-1 when shuffle is false. Independent of any
/// earlier epoch, so a resumed run visits the same examples.
std::vector<size_t> epochOrder(size_t n, uint64_t seed, uint64_t epoch, bool shuffle);

/// The length a batch whose longest text has n tokens is padded to: n
/// rounded up to a multiple of 8 up to 64, of 16 up to 128, of 32 up to 256,
/// of 64 beyond. Every distinct length is a plan of its own (extents, a
/// memory plan, and for the llvm backend a compiled module), so a run over
/// texts of every length up to 256 makes 16 plans, which the bounded plan
/// cache keeps, instead of 256; the padding (at most 25% beyond 64 tokens,
/// 7% on average over SpamAssassin's batches) is masked out by the models.
size_t bucketLength(size_t n);

/// Builds the batch of examples order[begin, end), padded to the
/// bucketLength of the longest and to at least minLength tokens (see
/// minimumLength).
Batch makeBatch(const EncodedData &data, const std::vector<size_t> &order, size_t begin, size_t end,
                size_t minLength = 1);

/// The fewest tokens a batch of graph g needs (at least 1): a convolution of
/// width 5 makes a `T-4` dim, so T >= 4 (ir::Graph::minimumExtents of the
/// first input's sequence symbol). Shorter texts are padded up to it; their
/// masks keep the padding out of the result.
size_t minimumLength(const ir::Graph &g);

} // namespace kiln::runtime
