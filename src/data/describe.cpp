#include "hemoscan/data/describe.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "hemoscan/io/load.hpp"
#include "hemoscan/util/strings.hpp"

namespace hemoscan {

Stats compute_stats(std::vector<double> v) {
    Stats s;
    s.n = v.size();
    if (v.empty()) return s;
    std::sort(v.begin(), v.end());
    s.min = v.front();
    s.max = v.back();
    s.median = v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
    double sum = 0;
    for (double x : v) sum += x;
    s.mean = sum / static_cast<double>(v.size());
    double ss = 0;
    for (double x : v) ss += (x - s.mean) * (x - s.mean);
    s.sd = v.size() > 1 ? std::sqrt(ss / static_cast<double>(v.size() - 1)) : 0.0;
    return s;
}

namespace {

nlohmann::json stats_json(const Stats& s) {
    return {{"n", s.n}, {"mean", s.mean}, {"sd", s.sd}, {"min", s.min}, {"median", s.median}, {"max", s.max}};
}

struct ImageFacts {
    double width = 0, height = 0, mean = 0, sd = 0, min = 0, max = 0;
    bool hu = false;
};

// Image sizes differ enough between classes to be a shortcut when their medians differ by > 25%.
bool sizes_differ(const Stats& a, const Stats& b) {
    if (a.n < 3 || b.n < 3) return false;
    double hi = std::max(a.median, b.median), lo = std::min(a.median, b.median);
    return lo > 0 && hi / lo > 1.25;
}

}  // namespace

nlohmann::json DatasetSummary::to_json() const {
    nlohmann::json j;
    j["root"] = root;
    j["form"] = form;
    j["multiclass"] = multiclass;
    j["images"] = images;
    j["patients"] = patients;
    j["images_per_patient"] = stats_json(images_per_patient);
    if (studies > 0) {
        j["studies"] = studies;
        j["slices_per_study"] = stats_json(slices_per_study);
    }
    j["width"] = stats_json(width);
    j["height"] = stats_json(height);
    j["intensity"] = {{"per_image_mean", stats_json(intensity_mean)},
                      {"per_image_sd", stats_json(intensity_sd)},
                      {"min", intensity_min},
                      {"max", intensity_max},
                      {"hu_images", hu_images}};
    j["formats"] = formats;
    nlohmann::json labs = nlohmann::json::object();
    for (const auto& l : labels) {
        const double slices = static_cast<double>(l.positives + l.negatives);
        labs[l.name] = {{"positives", l.positives},
                        {"negatives", l.negatives},
                        {"prevalence", slices > 0 ? static_cast<double>(l.positives) / slices : 0.0},
                        {"width", {{"positives", stats_json(l.width_pos)}, {"negatives", stats_json(l.width_neg)}}},
                        {"height", {{"positives", stats_json(l.height_pos)}, {"negatives", stats_json(l.height_neg)}}},
                        {"mean_intensity",
                         {{"positives", stats_json(l.intensity_pos)}, {"negatives", stats_json(l.intensity_neg)}}}};
        if (studies > 0) {
            labs[l.name]["positive_studies"] = l.positive_studies;
            labs[l.name]["study_prevalence"] = static_cast<double>(l.positive_studies) / static_cast<double>(studies);
        }
    }
    j["labels"] = labs;
    j["warnings"] = warnings;
    return j;
}

DatasetSummary describe_dataset(const Dataset& dataset, const DescribeOptions& options) {
    const size_t n = dataset.size();
    std::vector<ImageFacts> facts(n);
    std::atomic<size_t> next{0}, done{0};
    std::exception_ptr error;
    std::mutex error_mutex;

    auto worker = [&] {
        for (size_t i = next++; i < n; i = next++) {
            try {
                DicomSlice s = load_image(dataset.items[i].path, options.modality);
                cv::Scalar mean, sd;
                cv::meanStdDev(s.pixels, mean, sd);
                double lo, hi;
                cv::minMaxLoc(s.pixels, &lo, &hi);
                facts[i] = {static_cast<double>(s.pixels.cols), static_cast<double>(s.pixels.rows), mean[0], sd[0],
                            lo, hi, s.meta.is_hu};
            } catch (...) {
                std::lock_guard<std::mutex> lock(error_mutex);
                if (!error) error = std::current_exception();
                next = n;  // stop the other workers early
            }
            ++done;
        }
    };
    const int threads = std::max(1, std::min<int>(options.threads, static_cast<int>(n)));
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
    // The calling thread only reports progress, so callbacks never run on a worker.
    while (done < n) {
        if (options.progress) options.progress(done, n);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (done >= n) break;
        bool stopped;
        {
            std::lock_guard<std::mutex> lock(error_mutex);
            stopped = static_cast<bool>(error);
        }
        if (stopped) break;
    }
    for (auto& t : pool) t.join();
    if (error) std::rethrow_exception(error);
    if (options.progress) options.progress(n, n);

    DatasetSummary s;
    s.root = dataset.root.string();
    s.form = to_string(dataset.form);
    s.multiclass = dataset.multiclass;
    s.images = n;
    s.patients = dataset.patient_count();

    std::map<std::string, double> per_patient;
    for (const auto& it : dataset.items) per_patient[it.patient] += 1;
    std::vector<double> ipp;
    for (const auto& [p, c] : per_patient) ipp.push_back(c);
    s.images_per_patient = compute_stats(ipp);
    const std::vector<std::vector<size_t>> studies = dataset.studies();
    s.studies = studies.size();
    std::vector<double> sps;
    for (const auto& st : studies) sps.push_back(static_cast<double>(st.size()));
    s.slices_per_study = compute_stats(sps);

    std::vector<double> w, h, m, sd;
    s.intensity_min = n ? facts[0].min : 0;
    s.intensity_max = n ? facts[0].max : 0;
    for (size_t i = 0; i < n; ++i) {
        w.push_back(facts[i].width);
        h.push_back(facts[i].height);
        m.push_back(facts[i].mean);
        sd.push_back(facts[i].sd);
        s.intensity_min = std::min(s.intensity_min, facts[i].min);
        s.intensity_max = std::max(s.intensity_max, facts[i].max);
        s.hu_images += facts[i].hu ? 1 : 0;
        std::string ext = to_lower(dataset.items[i].path.extension().string());
        s.formats[ext.empty() ? "(none)" : ext] += 1;
    }
    s.width = compute_stats(w);
    s.height = compute_stats(h);
    s.intensity_mean = compute_stats(m);
    s.intensity_sd = compute_stats(sd);

    for (size_t l = 0; l < dataset.label_names.size(); ++l) {
        LabelSummary ls;
        ls.name = dataset.label_names[l];
        std::vector<double> wp, wn, hp, hn, ip, in;
        for (size_t i = 0; i < n; ++i) {
            bool pos = dataset.items[i].labels[l] > 0.5f;
            (pos ? ls.positives : ls.negatives) += 1;
            (pos ? wp : wn).push_back(facts[i].width);
            (pos ? hp : hn).push_back(facts[i].height);
            (pos ? ip : in).push_back(facts[i].mean);
        }
        for (const auto& st : studies) {
            ls.positive_studies += std::any_of(st.begin(), st.end(), [&](size_t i) {
                return dataset.items[i].labels[l] > 0.5f;
            }) ? 1 : 0;
        }
        ls.width_pos = compute_stats(wp);
        ls.width_neg = compute_stats(wn);
        ls.height_pos = compute_stats(hp);
        ls.height_neg = compute_stats(hn);
        ls.intensity_pos = compute_stats(ip);
        ls.intensity_neg = compute_stats(in);
        if (sizes_differ(ls.width_pos, ls.width_neg) || sizes_differ(ls.height_pos, ls.height_neg)) {
            s.warnings.push_back("label '" + ls.name + "': image size differs by class (median " +
                                 std::to_string(static_cast<int>(ls.width_pos.median)) + "x" +
                                 std::to_string(static_cast<int>(ls.height_pos.median)) + " positive vs " +
                                 std::to_string(static_cast<int>(ls.width_neg.median)) + "x" +
                                 std::to_string(static_cast<int>(ls.height_neg.median)) +
                                 " negative): a model can learn size or source instead of anatomy; resize, crop "
                                 "to the head and check the saliency maps");
        }
        if (ls.positives == 0 || ls.negatives == 0) {
            s.warnings.push_back("label '" + ls.name + "' has only one class (" + std::to_string(ls.positives) +
                                 " positives, " + std::to_string(ls.negatives) + " negatives)");
        }
        s.labels.push_back(std::move(ls));
    }
    if (s.patients < s.images) {
        // Grouping matters: several images per patient leak between folds unless splits are grouped.
        s.warnings.push_back(std::to_string(s.images) + " images from " + std::to_string(s.patients) +
                             " patients: splits are grouped by patient");
    }
    return s;
}

}  // namespace hemoscan
