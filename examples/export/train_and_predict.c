/* train_and_predict.c - a C program that trains and uses a model exported
 * by `kiln export --graph=train` (prefix `model`), without kiln.
 *
 * usage: train_and_predict CKPT DATA.tsv BATCH EPOCHS OUT_CKPT [TEXT...]
 *
 * Loads CKPT, trains EPOCHS passes over DATA.tsv (lines LABEL<TAB>TEXT) in
 * the file's order, BATCH lines per step, printing `step N LOSS` per step
 * (the format of kiln train --loss-log), saves OUT_CKPT, then prints for
 * each TEXT the predicted label and the class probabilities as kiln
 * predict does (`LABEL<TAB>NAME P  NAME P`).
 *
 * Build: cc train_and_predict.c -I DIR -L DIR -lmodel -Wl,-rpath,DIR
 * (DIR: kiln export's -o).
 */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_IDS = 4096 };

/* A text's ids: `planes` rows of len ids (the token ids, then each input
 * the model derives from them, such as hashed word pairs). */
struct example {
  int32_t label;
  int64_t len;
  int32_t *ids; /* planes * len */
};

static void fail(const char *what) {
  fprintf(stderr, "train_and_predict: %s: %s\n", what, model_last_error());
  exit(1);
}

static int32_t label_index(const model *m, const char *name) {
  for (int64_t k = 0; k < model_classes(m); ++k)
    if (strcmp(model_label(m, k), name) == 0) return (int32_t)k;
  fprintf(stderr, "train_and_predict: the model has no label '%s'\n", name);
  exit(1);
}

/* Reads LABEL<TAB>TEXT lines, tokenized by the model. */
static struct example *read_data(model *m, const char *path, size_t *count) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    exit(1);
  }
  struct example *examples = NULL;
  size_t n = 0, capacity = 0;
  char *line = NULL;
  size_t size = 0;
  ssize_t got;
  int64_t planes = model_planes(m);
  int32_t *ids = malloc((size_t)planes * MAX_IDS * sizeof(int32_t));
  while ((got = getline(&line, &size, f)) > 0) {
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    int64_t len = model_tokenize(m, tab + 1, ids, MAX_IDS);
    if (len < 0) fail("tokenize");
    if (n == capacity) {
      capacity = capacity ? 2 * capacity : 256;
      examples = realloc(examples, capacity * sizeof *examples);
    }
    examples[n].label = label_index(m, line);
    examples[n].len = len;
    examples[n].ids = malloc((size_t)planes * (size_t)(len ? len : 1) * sizeof(int32_t));
    for (int64_t p = 0; p < planes; ++p)
      memcpy(examples[n].ids + p * len, ids + p * MAX_IDS, (size_t)len * sizeof(int32_t));
    ++n;
  }
  free(ids);
  free(line);
  fclose(f);
  *count = n;
  return examples;
}

static void predict(model *m, const char *text) {
  int64_t planes = model_planes(m);
  int32_t *ids = malloc((size_t)planes * MAX_IDS * sizeof(int32_t));
  int64_t len = model_tokenize(m, text, ids, MAX_IDS);
  if (len < 0) fail("tokenize");
  for (int64_t p = 1; p < planes; ++p) /* one row of planes * len */
    memmove(ids + p * len, ids + p * MAX_IDS, (size_t)len * sizeof(int32_t));
  int64_t classes = model_classes(m);
  float *probs = malloc((size_t)classes * sizeof(float));
  if (model_predict(m, ids, 1, len, probs) != 0) fail("predict");
  int64_t best = 0;
  for (int64_t k = 1; k < classes; ++k)
    if (probs[k] > probs[best]) best = k;
  printf("%s\t", model_label(m, best));
  for (int64_t k = 0; k < classes; ++k) printf("%s%s %.4f", k ? "  " : "", model_label(m, k), probs[k]);
  printf("\n");
  free(probs);
  free(ids);
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: train_and_predict CKPT DATA.tsv BATCH EPOCHS OUT_CKPT [TEXT...]\n");
    return 2;
  }
  int64_t batch = atoll(argv[3]), epochs = atoll(argv[4]);
  model *m = model_load(argv[1]);
  if (!m) fail(argv[1]);
  size_t n;
  struct example *data = read_data(m, argv[2], &n);
  int64_t planes = model_planes(m);
  int32_t *ids = malloc((size_t)batch * (size_t)planes * MAX_IDS * sizeof(int32_t));
  int32_t *labels = malloc((size_t)batch * sizeof(int32_t));
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    for (size_t begin = 0; begin < n; begin += (size_t)batch) {
      size_t rows = n - begin < (size_t)batch ? n - begin : (size_t)batch;
      int64_t longest = 1; /* rows padded with 0 to the longest, as kiln batches them */
      for (size_t r = 0; r < rows; ++r)
        if (data[begin + r].len > longest) longest = data[begin + r].len;
      memset(ids, 0, rows * (size_t)planes * (size_t)longest * sizeof(int32_t));
      for (size_t r = 0; r < rows; ++r) {
        const struct example *e = &data[begin + r];
        for (int64_t p = 0; p < planes; ++p)
          memcpy(ids + ((int64_t)r * planes + p) * longest, e->ids + p * e->len, (size_t)e->len * sizeof(int32_t));
        labels[r] = e->label;
      }
      float loss;
      if (model_train_step(m, ids, labels, (int64_t)rows, longest, &loss) != 0) fail("train_step");
      printf("step %lld %.9g\n", (long long)++step, loss);
    }
  }
  if (model_save(m, argv[5]) != 0) fail(argv[5]);
  for (int i = 6; i < argc; ++i) predict(m, argv[i]);
  for (size_t i = 0; i < n; ++i) free(data[i].ids);
  free(data);
  free(ids);
  free(labels);
  model_free(m);
  return 0;
}
