//===- runtime/mpi.cpp - the Communicator on MPI -----------------------------===//
//
// The one file that includes mpi.h. Sums use MPI_Allreduce, and the
// started ones MPI_Iallreduce (Open MPI's libnbc schedules, moved on by
// MPI_Testall between steps and finished by MPI_Waitall): Open MPI picks
// each algorithm from the number of ranks and the message size alone, and
// every algorithm it has adds in an order fixed by them, so a run repeats
// bit for bit (tests/lit/distributed.test compares two runs' loss logs).
// Errors return (MPI_ERRORS_RETURN) and become kiln::Error with MPI's own
// message.
//
//===----------------------------------------------------------------------===//
#include "runtime/distributed.h"

#include "ir/diagnostic.h"

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <fmt/format.h>
#include <mpi.h>
#include <thread>

namespace kiln::runtime {

namespace {

void check(int code, const char *what) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  throw Error(fmt::format("MPI {} failed: {}", what, std::string(text, static_cast<size_t>(length))));
}

int count(size_t n, const char *what) {
  if (n > static_cast<size_t>(INT_MAX))
    throw Error(fmt::format("{} of {} elements is more than one MPI message can carry", what, n));
  return static_cast<int>(n);
}

class MpiWorld final : public Communicator {
public:
  MpiWorld() {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "initialisation");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void sum(std::span<float> values) override {
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count(values.size(), "a sum"), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
          "sum");
  }
  void sum(std::span<double> values) override {
    check(MPI_Allreduce(MPI_IN_PLACE, values.data(), count(values.size(), "a sum"), MPI_DOUBLE, MPI_SUM,
                        MPI_COMM_WORLD),
          "sum");
  }
  void gather(std::span<const int32_t> mine, std::vector<int32_t> &all) override {
    gatherAs(mine.data(), mine.size(), MPI_INT32_T, all);
  }
  void gather(std::span<const float> mine, std::vector<float> &all) override {
    gatherAs(mine.data(), mine.size(), MPI_FLOAT, all);
  }
  void gather(std::span<const char> mine, std::vector<char> &all) override {
    gatherAs(mine.data(), mine.size(), MPI_CHAR, all);
  }
  void startSum(std::span<float> values) override {
    requests_.emplace_back();
    check(MPI_Iallreduce(MPI_IN_PLACE, values.data(), count(values.size(), "a sum"), MPI_FLOAT, MPI_SUM,
                         MPI_COMM_WORLD, &requests_.back()),
          "sum");
  }
  void progressSums() override {
    if (requests_.empty()) return;
    int done = 0;
    check(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE), "sum");
  }
  void finishSums() override {
    if (requests_.empty()) return;
    check(MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE), "sum");
    requests_.clear();
  }
  bool same(uint64_t value) override {
    uint64_t range[2] = {value, ~value}; // the max of ~value is ~(the min)
    check(MPI_Allreduce(MPI_IN_PLACE, range, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD), "comparison");
    return range[0] == ~range[1];
  }

private:
  template <typename T> void gatherAs(const T *mine, size_t n, MPI_Datatype type, std::vector<T> &all) {
    int own = count(n, "a gather");
    counts_.assign(static_cast<size_t>(size_), 0);
    check(MPI_Allgather(&own, 1, MPI_INT, counts_.data(), 1, MPI_INT, MPI_COMM_WORLD), "gather of counts");
    offsets_.assign(static_cast<size_t>(size_), 0);
    size_t total = 0;
    for (int r = 0; r < size_; ++r) {
      offsets_[static_cast<size_t>(r)] = count(total, "a gather");
      total += static_cast<size_t>(counts_[static_cast<size_t>(r)]);
    }
    count(total, "a gather");
    all.resize(total);
    check(MPI_Allgatherv(mine, own, type, all.data(), counts_.data(), offsets_.data(), type, MPI_COMM_WORLD), "gather");
  }
  int rank_ = 0, size_ = 1;
  std::vector<int> counts_, offsets_;
  std::vector<MPI_Request> requests_; ///< started sums (a finished one is MPI_REQUEST_NULL)
};

std::unique_ptr<MpiWorld> world;

} // namespace

bool launchedByMpi() {
  for (const char *name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(name)) return true;
  return false;
}

Communicator &startMpi() {
  if (!world) world = std::make_unique<MpiWorld>();
  return *world;
}

bool mpiStarted() { return world != nullptr; }

int threadsPerRank() {
  int local = 1;
  for (const char *name : {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"})
    if (const char *v = std::getenv(name)) local = std::max(1, std::atoi(v));
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local);
}

void finishMpi() {
  if (!world) return;
  MPI_Finalize();
  world.reset();
}

} // namespace kiln::runtime
