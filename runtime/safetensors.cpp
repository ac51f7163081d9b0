//===- runtime/safetensors.cpp - reading and writing .safetensors ---------===//
//
// The reader treats every file as hostile: each number from the header is
// range-checked before it is used as a size or an offset, sizes are
// multiplied with overflow checks, and a tensor's bytes must match its shape
// and dtype exactly, so no allocation is larger than the file justifies. The
// writer follows the reference implementation: compact JSON header padded
// with spaces to a multiple of 8, "__metadata__" first, tensors contiguous.
//
//===----------------------------------------------------------------------===//
#include "runtime/safetensors.h"

#include "runtime/output_guard.h"

#include "ir/diagnostic.h"
#include "runtime/json.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <unistd.h>

namespace kiln::runtime {

// Tensor data is copied to and from the file byte for byte.
static_assert(std::endian::native == std::endian::little, "safetensors I/O assumes a little-endian host");

namespace {

// Real headers are kilobytes; the cap keeps a forged length from making us
// allocate (or parse) gigabytes of "header".
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

enum class SrcType { F32, F64, I32, I64, I16, I8, U8, Bool };

struct DTypeInfo {
  const char *name;
  SrcType src;
  size_t size;
  ir::DType kiln;
};

constexpr DTypeInfo kDTypes[] = {
    {"F32", SrcType::F32, 4, ir::DType::F32}, {"F64", SrcType::F64, 8, ir::DType::F32},
    {"I32", SrcType::I32, 4, ir::DType::I32}, {"I64", SrcType::I64, 8, ir::DType::I32},
    {"I16", SrcType::I16, 2, ir::DType::I32}, {"I8", SrcType::I8, 1, ir::DType::I32},
    {"U8", SrcType::U8, 1, ir::DType::I32},   {"BOOL", SrcType::Bool, 1, ir::DType::Bool},
};

const char *fileDTypeName(ir::DType t) {
  switch (t) {
  case ir::DType::F32: return "F32";
  case ir::DType::I32: return "I32";
  case ir::DType::Bool: return "BOOL";
  }
  return "F32";
}

template <typename T> T load(const char *p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

struct Span {
  uint64_t begin, end;
  std::string name;
};

class Reader {
public:
  Reader(const std::string &bytes, const std::string &what) : bytes_(bytes), what_(what) {}

  SafeTensors read() {
    if (bytes_.size() < 8)
      fail("file is too short for a safetensors header (" + std::to_string(bytes_.size()) + " bytes)");
    uint64_t n = load<uint64_t>(bytes_.data());
    // A length the file cannot hold, with no JSON object after it, is some
    // other file (a TSV passed as --ckpt), not a damaged safetensors one.
    bool implausible = n > kMaxHeaderBytes || n > bytes_.size() - 8;
    if (implausible && (bytes_.size() == 8 || bytes_[8] != '{'))
      fail("not a safetensors file (it does not start with a header length and a JSON header)");
    if (n > kMaxHeaderBytes)
      fail("header length " + std::to_string(n) + " exceeds the limit of " + std::to_string(kMaxHeaderBytes));
    if (n > bytes_.size() - 8)
      fail("header length " + std::to_string(n) + " runs past the end of the file (" +
           std::to_string(bytes_.size()) + " bytes)");
    dataBegin_ = 8 + n;
    dataSize_ = bytes_.size() - dataBegin_;
    json::Value header;
    try {
      header = json::parse(std::string_view(bytes_).substr(8, n));
    } catch (const Error &e) {
      fail("bad header: " + e.message());
    }
    if (!header.isObject()) fail(std::string("header is a JSON ") + json::kindName(header.kind()) + ", not an object");

    SafeTensors st;
    std::vector<Span> spans;
    for (const auto &[name, entry] : header.asObject()) {
      if (name == "__metadata__") {
        readMetadata(entry, st.metadata);
        continue;
      }
      auto [tensor, span] = readTensor(name, entry);
      st.tensors.emplace(name, std::move(tensor));
      spans.push_back(std::move(span));
    }
    checkOverlaps(spans);
    return st;
  }

private:
  const std::string &bytes_;
  const std::string &what_;
  uint64_t dataBegin_ = 0, dataSize_ = 0;

  // Located at the file, so the driver prints `file: error: message`.
  [[noreturn]] void fail(const std::string &msg) const { throw Error(msg, SourceLoc{what_}); }
  [[noreturn]] void failTensor(const std::string &name, const std::string &msg) const {
    fail("tensor '" + name + "': " + msg);
  }

  void readMetadata(const json::Value &v, std::map<std::string, std::string> &out) const {
    if (!v.isObject()) fail("__metadata__ must be an object of strings");
    for (const auto &[key, val] : v.asObject()) {
      if (!val.isString())
        fail("__metadata__ value of '" + key + "' is a " + json::kindName(val.kind()) + ", not a string");
      out.emplace(key, val.asString());
    }
  }

  std::pair<Tensor, Span> readTensor(const std::string &name, const json::Value &v) const {
    if (!v.isObject()) failTensor(name, "entry must be an object");
    const json::Value *dt = v.find("dtype"), *shape = v.find("shape"), *offs = v.find("data_offsets");
    if (!dt || !dt->isString()) failTensor(name, "missing or non-string \"dtype\"");
    if (!shape || !shape->isArray()) failTensor(name, "missing or non-array \"shape\"");
    if (!offs || !offs->isArray()) failTensor(name, "missing or non-array \"data_offsets\"");

    const DTypeInfo *info = nullptr;
    for (const DTypeInfo &d : kDTypes)
      if (dt->asString() == d.name) info = &d;
    if (!info)
      failTensor(name, "unsupported dtype '" + dt->asString() +
                           "' (kiln reads F32, F64, I32, I64, I16, I8, U8 and BOOL)");

    // Dims are checked one by one and the element count is multiplied with
    // overflow checks, so that Tensor's own unchecked product cannot wrap.
    std::vector<int64_t> dims;
    uint64_t numel = 1;
    for (const json::Value &d : shape->asArray()) {
      if (!d.isInt() || d.asInt() < 0)
        failTensor(name, "shape dim " + std::to_string(dims.size()) + " is not a non-negative integer");
      uint64_t next = 0;
      if (__builtin_mul_overflow(numel, static_cast<uint64_t>(d.asInt()), &next) ||
          next > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        failTensor(name, "element count overflows");
      numel = next;
      dims.push_back(d.asInt());
    }
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, info->size, &nbytes)) failTensor(name, "byte size overflows");

    const json::Array &o = offs->asArray();
    if (o.size() != 2 || !o[0].isInt() || !o[1].isInt() || o[0].asInt() < 0 || o[1].asInt() < 0)
      failTensor(name, "data_offsets must be two non-negative integers");
    uint64_t begin = static_cast<uint64_t>(o[0].asInt()), end = static_cast<uint64_t>(o[1].asInt());
    if (end < begin) failTensor(name, "data_offsets end " + std::to_string(end) + " is before begin " +
                                          std::to_string(begin));
    if (end > dataSize_)
      failTensor(name, "data_offsets end " + std::to_string(end) + " is beyond the data buffer (" +
                           std::to_string(dataSize_) + " bytes)");
    if (end - begin != nbytes)
      failTensor(name, "data_offsets cover " + std::to_string(end - begin) + " bytes but " + info->name + "[" +
                           std::to_string(numel) + " elements] needs " + std::to_string(nbytes));

    // Only now is the size known to be backed by bytes in the file.
    Tensor t(info->kiln, std::move(dims));
    convert(name, *info, bytes_.data() + dataBegin_ + begin, t);
    return {std::move(t), Span{begin, end, name}};
  }

  void convert(const std::string &name, const DTypeInfo &info, const char *src, Tensor &t) const {
    size_t n = static_cast<size_t>(t.numel());
    auto toI32 = [&](int64_t v, size_t i) {
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
        failTensor(name, "element " + std::to_string(i) + " = " + std::to_string(v) + " is out of i32 range");
      return static_cast<int32_t>(v);
    };
    std::span<int32_t> dst = t.dtype() == ir::DType::I32 ? t.i32() : std::span<int32_t>();
    switch (info.src) {
    case SrcType::F32:
    case SrcType::I32:
      // A zero-element tensor has no buffer, and memcpy(nullptr, _, 0) is
      // undefined behaviour all the same.
      if (t.byteSize()) std::memcpy(t.raw(), src, t.byteSize());
      return;
    case SrcType::F64: {
      std::span<float> out = t.f32();
      for (size_t i = 0; i < n; ++i) {
        double d = load<double>(src + 8 * i);
        // A finite double beyond float's range has no f32 value (converting
        // it is undefined behaviour); NaN and infinities carry over.
        if (std::isfinite(d) && std::fabs(d) > std::numeric_limits<float>::max())
          failTensor(name, "element " + std::to_string(i) + " is out of f32 range");
        out[i] = static_cast<float>(d);
      }
      return;
    }
    case SrcType::I64:
      for (size_t i = 0; i < n; ++i) dst[i] = toI32(load<int64_t>(src + 8 * i), i);
      return;
    case SrcType::I16:
      for (size_t i = 0; i < n; ++i) dst[i] = load<int16_t>(src + 2 * i);
      return;
    case SrcType::I8:
      for (size_t i = 0; i < n; ++i) dst[i] = load<int8_t>(src + i);
      return;
    case SrcType::U8:
      for (size_t i = 0; i < n; ++i) dst[i] = load<uint8_t>(src + i);
      return;
    case SrcType::Bool: {
      std::span<uint8_t> out = t.b8();
      for (size_t i = 0; i < n; ++i) {
        uint8_t b = load<uint8_t>(src + i);
        if (b > 1)
          failTensor(name, "element " + std::to_string(i) + " is " + std::to_string(b) + ", not a bool 0 or 1");
        out[i] = b;
      }
      return;
    }
    }
  }

  // The format forbids holes and overlaps. Holes are harmless and tolerated;
  // overlaps mean two tensors alias the same bytes, which no writer intends.
  void checkOverlaps(std::vector<Span> &spans) const {
    std::erase_if(spans, [](const Span &s) { return s.begin == s.end; });
    std::sort(spans.begin(), spans.end(), [](const Span &a, const Span &b) { return a.begin < b.begin; });
    for (size_t i = 1; i < spans.size(); ++i)
      if (spans[i].begin < spans[i - 1].end)
        fail("tensors '" + spans[i - 1].name + "' and '" + spans[i].name + "' overlap in the data buffer");
  }
};

[[noreturn]] void failIo(const std::string &what, const std::string &path) {
  throw Error("cannot " + what + " '" + path + "': " + std::strerror(errno));
}

} // namespace

SafeTensors parseSafeTensors(const std::string &bytes, const std::string &what) {
  return Reader(bytes, what).read();
}

SafeTensors readSafeTensors(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) failIo("open", path);
  struct stat sb {};
  if (::fstat(fd, &sb) != 0) {
    int err = errno;
    ::close(fd);
    errno = err;
    failIo("read", path);
  }
  if (!S_ISREG(sb.st_mode)) {
    ::close(fd);
    throw Error("cannot read '" + path + "': " + (S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file"));
  }
  // The size comes from the file system, not from the file's contents.
  std::string bytes(static_cast<size_t>(sb.st_size), '\0');
  size_t got = 0;
  while (got < bytes.size()) {
    ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int err = r == 0 ? EIO : errno; // a file that shrank while we read it
      ::close(fd);
      errno = err;
      failIo("read", path);
    }
    got += static_cast<size_t>(r);
  }
  ::close(fd);
  return parseSafeTensors(bytes, path);
}

std::string serializeSafeTensors(const SafeTensors &st) {
  // Data is laid out widest dtype first (as the reference implementation
  // does), so that every tensor is naturally aligned in the buffer; the
  // header lists tensors by name either way, JSON objects being unordered.
  std::vector<const std::pair<const std::string, Tensor> *> order;
  for (const auto &kv : st.tensors) order.push_back(&kv);
  std::sort(order.begin(), order.end(), [](auto *a, auto *b) {
    size_t sa = ir::dtypeSize(a->second.dtype()), sb = ir::dtypeSize(b->second.dtype());
    return sa != sb ? sa > sb : a->first < b->first;
  });
  std::map<std::string, std::pair<size_t, size_t>> offsets;
  size_t off = 0;
  for (auto *kv : order) {
    offsets[kv->first] = {off, off + kv->second.byteSize()};
    off += kv->second.byteSize();
  }

  std::string header = "{";
  if (!st.metadata.empty()) {
    header += "\"__metadata__\":{";
    for (auto it = st.metadata.begin(); it != st.metadata.end(); ++it)
      header += (it == st.metadata.begin() ? "" : ",") + json::quote(it->first) + ":" + json::quote(it->second);
    header += "}";
  }
  for (const auto &[name, t] : st.tensors) {
    // The key is reserved; a tensor by that name would make a duplicate key
    // that every reader rejects.
    if (name == "__metadata__") throw Error("cannot save a tensor named '__metadata__'");
    if (header.size() > 1) header += ",";
    header += json::quote(name) + ":{\"dtype\":\"" + fileDTypeName(t.dtype()) + "\",\"shape\":[";
    for (size_t i = 0; i < t.rank(); ++i) header += (i ? "," : "") + std::to_string(t.shape()[i]);
    auto [b, e] = offsets[name];
    header += "],\"data_offsets\":[" + std::to_string(b) + "," + std::to_string(e) + "]}";
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');

  std::string out(8, '\0');
  uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  out.reserve(8 + header.size() + off);
  out += header;
  for (auto *kv : order) out.append(reinterpret_cast<const char *>(kv->second.raw()), kv->second.byteSize());
  return out;
}

void writeSafeTensors(const std::string &path, const SafeTensors &st) {
  writeFileAtomic(path, serializeSafeTensors(st));
}

} // namespace kiln::runtime
