//===- runtime/data_shard.cpp - each process's part of the data -----------===//
//
// The cut: a process's part starts at the first line start at or after its
// nominal byte offset (size * rank / N), found by reading on from the byte
// before it to the next line end, and ends where the next process's part
// starts; a line longer than a part leaves that part empty. Each process
// reads only its bytes (pread), plus the stretch to the next line end at
// either edge. A source that is not a regular file (a pipe) cannot be read
// at an offset, so it is read whole and cut the same way in memory.
//
// What the processes exchange is small and sent once: per process, its
// line and example counts (as doubles in one sum, exact below 2^53), the
// problems of skipped records, the token counts and label names
// (length-prefixed byte strings, gathered), and per training example its
// length (gathered int32s).
//
//===----------------------------------------------------------------------===//
#include "runtime/data_shard.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <numeric>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::runtime {

namespace {

/// Every process's `mine`, by rank.
std::vector<size_t> perRank(size_t mine, Communicator &comm) {
  std::vector<double> values(static_cast<size_t>(comm.size()), 0.0);
  values[static_cast<size_t>(comm.rank())] = static_cast<double>(mine);
  comm.sum(values);
  std::vector<size_t> out;
  for (double v : values) out.push_back(static_cast<size_t>(v));
  return out;
}

size_t sumBelow(const std::vector<size_t> &v, size_t rank) {
  return std::accumulate(v.begin(), v.begin() + static_cast<ptrdiff_t>(rank), size_t{0});
}

/// A file read at offsets, or a stream read whole.
class Source {
public:
  explicit Source(const std::string &path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
    struct stat sb {};
    if (::fstat(fd_, &sb) == 0 && S_ISREG(sb.st_mode)) {
      size_ = static_cast<size_t>(sb.st_size);
      return;
    }
    ::close(fd_);
    fd_ = -1;
    whole_ = readFile(path); // a directory, a pipe: readFile says what it is or reads it
    size_ = whole_.size();
  }
  ~Source() {
    if (fd_ >= 0) ::close(fd_);
  }
  Source(const Source &) = delete;
  Source &operator=(const Source &) = delete;

  size_t size() const { return size_; }

  /// Bytes [offset, offset + length), clipped to the end.
  std::string read(size_t offset, size_t length) const {
    length = std::min(length, size_ - std::min(offset, size_));
    if (fd_ < 0) return whole_.substr(std::min(offset, size_), length);
    std::string out(length, '\0');
    for (size_t done = 0; done < length;) {
      ssize_t r = ::pread(fd_, out.data() + done, length - done, static_cast<off_t>(offset + done));
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) throw Error(fmt::format("cannot read '{}': {}", path_, std::strerror(errno)));
      if (r == 0) throw Error(fmt::format("cannot read '{}': it became shorter while being read", path_));
      done += static_cast<size_t>(r);
    }
    return out;
  }

  /// The first line start at or after `pos` (0 is one; so is the byte
  /// after every line end), or the size when none is.
  size_t lineStartAtOrAfter(size_t pos) const {
    if (pos == 0) return 0;
    constexpr size_t kChunk = 1 << 16;
    for (size_t at = pos - 1; at < size_;) {
      std::string chunk = read(at, kChunk);
      if (size_t nl = chunk.find('\n'); nl != std::string::npos) return at + nl + 1;
      at += chunk.size();
    }
    return size_;
  }

private:
  std::string path_;
  int fd_ = -1;
  size_t size_ = 0;
  std::string whole_;
};

void appendString(std::vector<char> &out, std::string_view s) {
  uint64_t n = s.size();
  const char *p = reinterpret_cast<const char *>(&n);
  out.insert(out.end(), p, p + sizeof n);
  out.insert(out.end(), s.begin(), s.end());
}

void appendNumber(std::vector<char> &out, uint64_t v) {
  const char *p = reinterpret_cast<const char *>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

/// Reads what appendString and appendNumber wrote.
class Unpacker {
public:
  explicit Unpacker(const std::vector<char> &bytes) : bytes_(bytes) {}
  bool done() const { return at_ >= bytes_.size(); }
  uint64_t number() {
    uint64_t v = 0;
    if (bytes_.size() - at_ < sizeof v) throw Error("a data-parallel exchange of the data's facts came back cut short");
    std::memcpy(&v, bytes_.data() + at_, sizeof v);
    at_ += sizeof v;
    return v;
  }
  std::string string() {
    uint64_t n = number();
    if (bytes_.size() - at_ < n) throw Error("a data-parallel exchange of the data's facts came back cut short");
    std::string s(bytes_.data() + at_, n);
    at_ += n;
    return s;
  }

private:
  const std::vector<char> &bytes_;
  size_t at_ = 0;
};

/// stats becomes the sum of every process's, with the first problems.
void mergeStats(ReadStats &stats, Communicator &comm) {
  std::vector<double> counts = {static_cast<double>(stats.records), static_cast<double>(stats.skipped)};
  comm.sum(counts);
  std::vector<char> mine, all;
  for (const std::string &p : stats.problems) appendString(mine, p);
  comm.gather(mine, all);
  constexpr size_t kept = 5; // as readExamples keeps
  stats.records = static_cast<size_t>(counts[0]);
  stats.skipped = static_cast<size_t>(counts[1]);
  stats.problems.clear();
  for (Unpacker u(all); !u.done();) {
    std::string p = u.string();
    if (stats.problems.size() < kept) stats.problems.push_back(std::move(p));
  }
}

} // namespace

FileShard readFileShard(const std::string &path, const ReadOptions &options, ReadStats &stats, Communicator &comm) {
  stats = ReadStats{};
  const DataFormat format = dataFormat(path, options.format);
  const size_t rank = static_cast<size_t>(comm.rank()), ranks = static_cast<size_t>(comm.size());
  FileShard shard;
  if (format == DataFormat::Csv) {
    // Every process reads the records alike; each keeps its run of them.
    ReadStats local;
    std::vector<RawExample> all = parseExamples(readFile(path), path, format, options, local, 1);
    size_t n = all.size(), begin = n * rank / ranks, end = n * (rank + 1) / ranks;
    shard.examples.assign(std::make_move_iterator(all.begin() + static_cast<ptrdiff_t>(begin)),
                          std::make_move_iterator(all.begin() + static_cast<ptrdiff_t>(end)));
    shard.first = begin;
    shard.total = n;
    if (rank == 0) stats = std::move(local); // counted once
  } else {
    Source source(path);
    size_t size = source.size();
    auto nominal = [&](size_t r) {
      return static_cast<size_t>(static_cast<unsigned __int128>(size) * r / ranks);
    };
    size_t begin = source.lineStartAtOrAfter(nominal(rank));
    size_t end = rank + 1 == ranks ? size : source.lineStartAtOrAfter(nominal(rank + 1));
    std::string bytes = source.read(begin, end - begin);
    std::vector<size_t> lines = perRank(static_cast<size_t>(std::count(bytes.begin(), bytes.end(), '\n')), comm);
    shard.examples = parseExamples(bytes, path, format, options, stats, 1 + sumBelow(lines, rank));
    std::vector<size_t> counts = perRank(shard.examples.size(), comm);
    shard.first = sumBelow(counts, rank);
    shard.total = sumBelow(counts, ranks);
  }
  mergeStats(stats, comm);
  if (shard.total == 0) throw Error(noExamplesReason(stats), SourceLoc{path, 0, 0});
  return shard;
}

ShardSplit splitShard(FileShard &&data, double validFraction, uint64_t seed, bool shuffle) {
  ShardSplit split;
  split.fileFirst = data.first;
  split.fileCount = data.examples.size();
  split.fileTotal = data.total;
  size_t n = data.total, nValid = 0;
  std::vector<size_t> order = splitOrder(n, validFraction, seed, shuffle, nValid);
  size_t nTrain = n - nValid;
  split.validTotal = nValid;
  split.trainFileIndex.assign(order.begin(), order.begin() + static_cast<ptrdiff_t>(nTrain));
  // Where each of this process's examples lies in the split's order.
  std::vector<size_t> position(split.fileCount, 0);
  for (size_t i = 0; i < n; ++i)
    if (order[i] >= split.fileFirst && order[i] - split.fileFirst < split.fileCount)
      position[order[i] - split.fileFirst] = i;
  for (size_t k = 0; k < split.fileCount; ++k) {
    if (position[k] < nTrain) {
      split.train.push_back(std::move(data.examples[k]));
      split.ownTrainFileIndex.push_back(split.fileFirst + k);
    } else {
      split.valid.push_back(std::move(data.examples[k]));
    }
  }
  return split;
}

Vocabulary sharedVocabulary(const std::vector<RawExample> &ownTrain, size_t maxSize, size_t minFreq,
                            Communicator &comm) {
  std::vector<char> mine, all;
  for (const auto &[token, count] : countTokens(ownTrain)) {
    appendString(mine, token);
    appendNumber(mine, count);
  }
  comm.gather(mine, all);
  TokenCounts counts;
  for (Unpacker u(all); !u.done();) {
    std::string token = u.string();
    counts[std::move(token)] += u.number();
  }
  return Vocabulary::fromCounts(counts, maxSize, minFreq);
}

LabelSet sharedLabels(const std::vector<std::string> &ownNames, Communicator &comm) {
  std::vector<std::string> unique = ownNames;
  std::sort(unique.begin(), unique.end());
  unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
  std::vector<char> mine, all;
  for (const std::string &name : unique) appendString(mine, name);
  comm.gather(mine, all);
  std::vector<std::string> names;
  for (Unpacker u(all); !u.done();) names.push_back(u.string());
  return LabelSet::fromNames(std::move(names));
}

TrainShard trainShard(const ShardSplit &split, const EncodedData &train, Communicator &comm) {
  if (train.ids.size() != split.ownTrainFileIndex.size())
    throw Error("the encoded training data is not this process's training examples"); // a caller's bug
  const size_t n = split.trainFileIndex.size();
  // This process's examples, in file order, as the length of their ids,
  // negative where the label does not count.
  std::vector<int32_t> mine(train.ids.size()), all;
  for (size_t i = 0; i < train.ids.size(); ++i) {
    auto length = static_cast<int32_t>(std::min<size_t>(train.ids[i].size(), INT32_MAX));
    mine[i] = train.labels[i] >= 0 ? length : -length;
  }
  comm.gather(mine, all); // every training example, in file order
  if (all.size() != n)
    throw Error(fmt::format("the processes hold {} training examples between them, not the {} of the split", all.size(),
                            n));
  std::vector<int64_t> trainIndexOf(split.fileTotal, -1), ownRow(split.fileCount, -1);
  for (size_t j = 0; j < n; ++j) trainIndexOf[split.trainFileIndex[j]] = static_cast<int64_t>(j);
  for (size_t i = 0; i < split.ownTrainFileIndex.size(); ++i)
    ownRow[split.ownTrainFileIndex[i] - split.fileFirst] = static_cast<int64_t>(i);
  TrainShard shard;
  shard.local.assign(n, -1);
  shard.length.assign(n, 0);
  shard.counted.assign(n, 0);
  shard.validTotal = split.validTotal;
  size_t next = 0;
  for (size_t f = 0; f < split.fileTotal; ++f) {
    int64_t j = trainIndexOf[f];
    if (j < 0) continue;
    int32_t v = all[next++];
    shard.length[static_cast<size_t>(j)] = v < 0 ? -v : v;
    shard.counted[static_cast<size_t>(j)] = v > 0;
    if (f >= split.fileFirst && f - split.fileFirst < split.fileCount)
      shard.local[static_cast<size_t>(j)] = ownRow[f - split.fileFirst];
  }
  return shard;
}

} // namespace kiln::runtime
