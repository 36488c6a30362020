// hemoscan-bench: the hemoscan side of the side-by-side benchmark against Python PyTorch (bench/run.sh,
// bench/python/bench.py does the same work). Every command prints one JSON object on stdout.
//   hemoscan-bench info
//   hemoscan-bench train --data DIR --model cnn|unet [--size 256 --batch 32 --steps 12 --warmup 3 --loading on|off]
//   hemoscan-bench infer --batch 1|32 [--size 256 --iters 20 --warmup 3]
//   hemoscan-bench preprocess --series DIR [--size 256 --repeat 3]
//   hemoscan-bench make-model --out M.pt --weights W.pt --meta META.json
#include <CLI/CLI.hpp>
#include <torch/csrc/jit/serialization/pickle.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include <unistd.h>

#include "hemoscan/data/batch_tensor.hpp"
#include "hemoscan/data/loader.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/dicom.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/models/classifier.hpp"
#include "hemoscan/models/serialize.hpp"
#include "hemoscan/preprocess/preprocess.hpp"
#include "hemoscan/preprocess/volume.hpp"
#include "hemoscan/infer/predictor.hpp"
#include "hemoscan/util/fs.hpp"
#include "hemoscan/util/runtime.hpp"
#if __has_include("hemoscan/models/segmenter.hpp") && defined(HEMOSCAN_BENCH_HAVE_UNET)
#include "hemoscan/models/segmenter.hpp"
#endif

namespace hemoscan {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// CPU time of the whole process (all threads): a measure that a busy machine disturbs less than wall time.
double cpu_seconds() { return static_cast<double>(std::clock()) / CLOCKS_PER_SEC; }

double median(std::vector<double> v) {
    if (v.empty()) return std::nan("");
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Json rounded_ms(const std::vector<double>& seconds) {
    Json out = Json::array();
    for (double s : seconds) out.push_back(std::round(s * 1e5) / 100.0);
    return out;
}

// The manifest's label columns in the order bench/python/bench.py reads them.
const std::vector<std::string> kLabels = {"any",          "epidural", "intraparenchymal", "intraventricular",
                                          "subarachnoid", "subdural"};
constexpr int kBleedMaxLabel = 5;  // mask values 1..5 are hemorrhages, 6 is calcification

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
    }
    return "unknown";
}

// The loading/preprocessing of a PNG training slice: 8-bit grey -> 0..1, plain resize, min-max.
PreprocessOptions png_preprocess(int size) {
    PreprocessOptions p;
    p.windows = {window_brain()};  // one channel; PNGs are already windowed
    p.resize = ResizeOptions{size, size, false, 0.f};
    p.normalization = Normalization::UnitRange;
    p.crop_head = false;
    return p;
}

// The preprocessing of the DICOM series (items 3 and 4): brain/subdural/bone windows, resize, min-max.
PreprocessOptions series_preprocess(int size) {
    PreprocessOptions p = png_preprocess(size);
    p.windows = parse_windows("rgb");
    return p;
}

// ---- train ----

struct TrainArgs {
    std::string data, model = "cnn", loading = "on";
    int size = 256, batch = 32, steps = 12, warmup = 3, workers = 2, threads = 2, prefetch = 2;
    std::uint64_t seed = 42;
    bool channels_last = false;
};

torch::Tensor soft_dice_loss(const torch::Tensor& logits, const torch::Tensor& target, double eps = 1e-5) {
    const int64_t k = logits.size(1);
    auto p = logits.softmax(1);
    auto t = torch::one_hot(target, k).permute({0, 3, 1, 2}).to(p.scalar_type());
    const std::vector<int64_t> dims = {0, 2, 3};
    auto inter = (p * t).sum(dims).slice(0, 1);
    auto denom = (p.sum(dims) + t.sum(dims)).slice(0, 1);
    return 1 - ((2 * inter + eps) / (denom + eps)).mean();
}

int cmd_train(const TrainArgs& a) {
    torch::set_num_threads(a.threads);
    torch::manual_seed(a.seed);
    const bool segment = a.model == "unet";
    DatasetOptions dopt;
    dopt.labels = kLabels;
    Dataset ds = open_dataset(a.data, dopt);
    if (!segment) {
        for (auto& item : ds.items) item.mask.clear();  // classification reads no masks
    }
    const size_t total = static_cast<size_t>(a.warmup + a.steps);
    if (ds.size() < total * static_cast<size_t>(a.batch)) {
        throw UsageError(a.data + ": " + std::to_string(ds.size()) + " slices, need " +
                         std::to_string(total * static_cast<size_t>(a.batch)));
    }

    std::shared_ptr<torch::nn::Module> module;
    std::function<torch::Tensor(const torch::Tensor&)> forward;
    if (segment) {
#ifdef HEMOSCAN_BENCH_HAVE_UNET
        SegModelConfig c;
        c.name = "unet";
        c.in_channels = 1;
        c.num_classes = 2;
        auto m = create_segmenter(c);
        forward = [m](const torch::Tensor& x) { return m->forward(x); };
        module = m;
#else
        throw UsageError("unet: this build has no src/models/unet.cpp yet");
#endif
    } else {
        ModelConfig c;
        c.name = a.model;
        c.in_channels = 1;
        c.num_outputs = static_cast<int>(kLabels.size());
        auto m = create_model(c);
        forward = [m](const torch::Tensor& x) { return m->forward(x); };
        module = m;
    }
    module->train();
    if (a.channels_last) {
        // Module::to() has no memory format in C++: convert the 4-D weights one by one.
        torch::NoGradGuard no_grad;
        for (auto& p : module->parameters()) {
            if (p.dim() == 4) p.set_data(p.contiguous(torch::MemoryFormat::ChannelsLast));
        }
    }
    torch::optim::AdamW opt(module->parameters(), torch::optim::AdamWOptions(1e-3).weight_decay(1e-4));

    // pos_weight as the trainer computes it: (n - pos) / pos per label.
    std::vector<float> w(kLabels.size(), 1.f);
    for (size_t l = 0; l < kLabels.size(); ++l) {
        double pos = 0;
        for (const auto& item : ds.items) pos += item.labels[l] > 0.5f ? 1 : 0;
        const double n = static_cast<double>(ds.size());
        w[l] = pos > 0 && pos < n ? static_cast<float>((n - pos) / pos) : 1.f;
    }
    const torch::Tensor pos_weight = torch::tensor(w);
    auto loss_of = [&](const torch::Tensor& out, const BatchTensors& t) {
        if (segment) {
            auto target = ((t.masks >= 1) & (t.masks <= kBleedMaxLabel)).to(torch::kLong);
            return torch::nn::functional::cross_entropy(out, target) + soft_dice_loss(out, target);
        }
        return torch::nn::functional::binary_cross_entropy_with_logits(
            out, t.labels, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().pos_weight(pos_weight));
    };

    LoaderOptions lo;
    lo.batch_size = a.batch;
    lo.shuffle = true;
    lo.drop_last = true;
    lo.workers = a.workers;
    lo.prefetch = a.prefetch;
    lo.seed = a.seed;
    lo.augment = true;
    lo.cache_max_bytes = 0;  // every sample decoded from its PNG, as the Python Dataset does
    std::vector<size_t> all(ds.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    auto loader = std::make_unique<DataLoader>(ds, all, png_preprocess(a.size), lo);
    loader->start_epoch(0);

    std::optional<BatchTensors> fixed;
    std::vector<double> step_s;
    Clock::time_point t_start;
    for (size_t step = 0; step < total; ++step) {
        const auto t0 = Clock::now();
        if (step == static_cast<size_t>(a.warmup)) t_start = t0;
        BatchTensors t;
        if (a.loading == "on" || !fixed) {
            Batch b;
            if (!loader->next(b)) throw Error("loader ran dry");
            t = to_tensors(std::move(b));
            if (a.loading == "off") {
                fixed = t;
                loader.reset();  // stop the workers: the compute-only loop runs without them
            }
        } else {
            t = *fixed;
        }
        torch::Tensor x = t.images;
        if (a.channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        opt.zero_grad();
        auto loss = loss_of(forward(x), t);
        loss.backward();
        torch::nn::utils::clip_grad_norm_(module->parameters(), 5.0);
        opt.step();
        const double v = loss.item<double>();
        if (!std::isfinite(v)) throw Error("training diverged");
        step_s.push_back(seconds_since(t0));
    }
    const double elapsed = seconds_since(t_start);
    const std::vector<double> measured(step_s.begin() + a.warmup, step_s.end());
    std::int64_t params = 0;
    for (const auto& p : module->parameters()) params += p.numel();
    Json out = {{"what", "train " + a.model},
                {"images_per_s", a.steps * a.batch / elapsed},
                {"step_ms_median", 1000 * median(measured)},
                {"step_ms", rounded_ms(measured)},
                {"loading", a.loading},
                {"workers", a.workers},
                {"threads", torch::get_num_threads()},
                {"parameters", params}};
    std::cout << out.dump() << std::endl;
    return 0;
}

// ---- make-model ----

struct MakeModelArgs {
    std::string out, weights, meta;
    int size = 256;
    std::string tta = "hflip";
    std::uint64_t seed = 42;
};

Json model_meta(int size, const std::string& tta) {
    const PreprocessOptions p = series_preprocess(size);
    Json windows = Json::array();
    for (const auto& w : p.windows) windows.push_back({{"name", w.name}, {"level", w.level}, {"width", w.width}});
    return {{"labels", kLabels},
            {"multiclass", false},
            {"preprocess",
             {{"windows", windows},
              {"window_spec", "rgb"},
              {"size", size},
              {"keep_aspect", false},
              {"median", 0},
              {"normalization", "unit"},
              {"crop_head", false},
              {"modality", "ct"}}},
            {"tta", tta},
            {"thresholds", std::vector<double>(kLabels.size(), 0.5)}};
}

int cmd_make_model(const MakeModelArgs& a) {
    torch::manual_seed(a.seed);
    ModelConfig c;
    c.name = "cnn";
    c.in_channels = 3;
    c.num_outputs = static_cast<int>(kLabels.size());
    auto model = create_model(c);
    // BatchNorm statistics of a fresh model are 0/1: estimate them on random inputs so that the
    // outputs (compared between hemoscan and Python) are not all saturated.
    {
        torch::NoGradGuard ng;
        std::vector<torch::nn::BatchNorm2dImpl*> bns;
        for (auto& m : model->modules(false)) {
            if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bns.push_back(bn);
        }
        for (auto* bn : bns) bn->options.momentum(c10::nullopt);
        model->train();
        for (int i = 0; i < 4; ++i) model->features(torch::rand({8, 3, a.size, a.size}));
        for (auto* bn : bns) bn->options.momentum(0.1);
        model->eval();
    }
    const Json meta = model_meta(a.size, a.tta);
    save_model(a.out, *model, meta);
    if (!a.meta.empty()) write_file_atomic(a.meta, meta.dump(2) + "\n");
    if (!a.weights.empty()) {
        // A state dict for Python's torch.load (parameter and buffer names as in Python).
        c10::Dict<std::string, torch::Tensor> dict;
        for (const auto& p : model->named_parameters()) dict.insert(p.key(), p.value().detach());
        for (const auto& b : model->named_buffers()) dict.insert(b.key(), b.value());
        const std::vector<char> bytes = torch::jit::pickle_save(c10::IValue(dict));
        write_file_atomic(a.weights, std::string(bytes.begin(), bytes.end()));
    }
    std::cout << Json{{"model", a.out}, {"parameters", parameter_count(*model)}}.dump() << std::endl;
    return 0;
}

// ---- infer ----

struct InferArgs {
    std::string model;  // a model file (make-model --tta none); empty: one is made in a temp folder
    int batch = 1, size = 256, iters = 20, warmup = 3, threads = 2;
};

int cmd_infer(const InferArgs& a) {
    fs::path model_path = a.model;
    fs::path tmp;
    if (model_path.empty()) {
        tmp = fs::temp_directory_path() / ("hemoscan-bench-" + std::to_string(::getpid()));
        fs::create_directories(tmp);
        model_path = tmp / "model.pt";
        MakeModelArgs m;
        m.out = model_path.string();
        m.size = a.size;
        m.tta = "none";  // one forward per image, as the Python side
        std::streambuf* old = std::cout.rdbuf(nullptr);
        cmd_make_model(m);
        std::cout.rdbuf(old);
    }
    Predictor predictor(model_path, a.threads);
    // Preprocessed samples as the analysis pipeline (infer/study.hpp) hands them over: H x W x 3 float images.
    std::vector<Sample> samples(static_cast<size_t>(a.batch));
    cv::RNG rng(42);
    for (auto& s : samples) {
        s.image = cv::Mat(a.size, a.size, CV_32FC3);
        rng.fill(s.image, cv::RNG::UNIFORM, 0.0, 1.0);
    }
    std::vector<double> t;
    for (int i = 0; i < a.warmup + a.iters; ++i) {
        const auto t0 = Clock::now();
        auto p = predictor.predict_samples(samples, a.batch);
        if (p.size() != samples.size()) throw Error("prediction count");
        if (i >= a.warmup) t.push_back(seconds_since(t0));
    }
    if (!tmp.empty()) fs::remove_all(tmp);
    const double med = median(t);
    Json out = {{"what", "infer batch " + std::to_string(a.batch)},
                {"ms_median", 1000 * med},
                {"ms_min", 1000 * *std::min_element(t.begin(), t.end())},
                {"ms_max", 1000 * *std::max_element(t.begin(), t.end())},
                {"images_per_s", a.batch / med},
                {"threads", torch::get_num_threads()}};
    std::cout << out.dump() << std::endl;
    return 0;
}

// ---- preprocess ----

// What the analysis pipeline does with a series folder before the model: read it, preprocess its slices.
std::vector<Sample> load_series_samples(const std::string& dir, const PreprocessOptions& pre) {
    auto volumes = read_dicom_series({fs::path(dir)}, ModalityPolicy::CtOnly);
    return preprocess_volume(volumes.front(), pre);
}

struct PreprocessArgs {
    std::string series;
    int size = 256, repeat = 3, warmup = 1;
};

int cmd_preprocess(const PreprocessArgs& a) {
    const PreprocessOptions pre = series_preprocess(a.size);
    std::vector<double> t, cpu;
    size_t n = 0;
    for (int r = 0; r < a.warmup + a.repeat; ++r) {
        const auto t0 = Clock::now();
        const double c0 = cpu_seconds();
        std::vector<Sample> samples = load_series_samples(a.series, pre);
        if (r >= a.warmup) {
            t.push_back(seconds_since(t0));
            cpu.push_back(cpu_seconds() - c0);
        }
        n = samples.size();
    }
    const double med = median(t);
    Json out = {{"what", "preprocess series"},
                {"slices", n},
                {"ms_median", 1000 * med},
                {"slices_per_s", static_cast<double>(n) / med},
                {"cpu_ms_median", 1000 * median(cpu)},
                {"runs_ms", rounded_ms(t)}};
    std::cout << out.dump() << std::endl;
    return 0;
}

// ---- info ----

int cmd_info() {
    Json j = runtime_json();
    j["cpu"] = cpu_model();
    j["cores"] = std::thread::hardware_concurrency();
    j["torch"] = TORCH_VERSION;
    ModelConfig c;
    c.in_channels = 1;
    c.num_outputs = static_cast<int>(kLabels.size());
    j["cnn_parameters"] = parameter_count(*create_model(c));
#ifdef HEMOSCAN_BENCH_HAVE_UNET
    SegModelConfig s;
    s.in_channels = 1;
    s.num_classes = 2;
    j["unet_parameters"] = parameter_count(*create_segmenter(s));
#else
    j["unet_parameters"] = nullptr;
#endif
    std::cout << j.dump() << std::endl;
    return 0;
}

}  // namespace
}  // namespace hemoscan

int main(int argc, char** argv) {
    using namespace hemoscan;
    CLI::App app{"hemoscan-bench: the hemoscan side of bench/run.sh"};
    app.require_subcommand(1);
    std::string log_level = "warn";
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, off");

    TrainArgs ta;
    auto* train = app.add_subcommand("train", "Training throughput (images/s)");
    train->add_option("--data", ta.data, "Synthetic data (hemoscan synth --format png)")->required();
    train->add_option("--model", ta.model)->check(CLI::IsMember({"cnn", "unet"}));
    train->add_option("--size", ta.size);
    train->add_option("--batch", ta.batch);
    train->add_option("--steps", ta.steps, "Timed steps");
    train->add_option("--warmup", ta.warmup, "Untimed steps first");
    train->add_option("--loading", ta.loading, "on: each batch loaded and augmented from PNGs; off: one batch reused")
        ->check(CLI::IsMember({"on", "off"}));
    train->add_option("--workers", ta.workers, "Loader threads");
    train->add_option("--prefetch", ta.prefetch, "Batches prepared ahead");
    train->add_option("--threads", ta.threads, "Intra-op threads");
    train->add_option("--seed", ta.seed);
    train->add_flag("--channels-last", ta.channels_last, "Channels-last input (experiment)");

    MakeModelArgs ma;
    auto* make = app.add_subcommand("make-model", "A cnn model file (3 windows) and its weights for Python");
    make->add_option("--out", ma.out, "model.pt for hemoscan")->required();
    make->add_option("--weights", ma.weights, "State dict for Python's torch.load");
    make->add_option("--meta", ma.meta, "The model's meta as JSON (labels, thresholds, preprocessing)");
    make->add_option("--size", ma.size);
    make->add_option("--tta", ma.tta)->check(CLI::IsMember({"none", "hflip"}));
    make->add_option("--seed", ma.seed);

    InferArgs ia;
    auto* infer = app.add_subcommand("infer", "Inference latency (batch 1) / throughput (batch 32) through Predictor");
    infer->add_option("--model", ia.model, "Model file (default: a fresh cnn without TTA)");
    infer->add_option("--batch", ia.batch);
    infer->add_option("--size", ia.size);
    infer->add_option("--iters", ia.iters);
    infer->add_option("--warmup", ia.warmup);
    infer->add_option("--threads", ia.threads);

    PreprocessArgs pa;
    auto* prep = app.add_subcommand("preprocess", "DICOM series -> HU -> 3 windows -> size px (slices/s)");
    prep->add_option("--series", pa.series, "A DICOM series folder")->required();
    prep->add_option("--size", pa.size);
    prep->add_option("--repeat", pa.repeat);
    prep->add_option("--warmup", pa.warmup);

    auto* info = app.add_subcommand("info", "Versions, CPU, allocator, BLAS, parameter counts");

    CLI11_PARSE(app, argc, argv);
    try {
        set_log_level(log_level);
        if (*train) return cmd_train(ta);
        if (*make) return cmd_make_model(ma);
        if (*infer) return cmd_infer(ia);
        if (*prep) return cmd_preprocess(pa);
        if (*info) return cmd_info();
    } catch (const UsageError& e) {
        std::fprintf(stderr, "hemoscan-bench: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "hemoscan-bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
