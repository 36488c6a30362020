// The data loader. Work is split per sample: workers claim the samples of the next few batches in
// epoch order (a window of `prefetch` batches bounds memory), write each straight into its slot of
// the batch buffer, and next() hands batches out strictly in order. Everything random (the shuffle
// and each sample's augmentation) is drawn from the seed, the epoch and the item index, never from
// the thread that happens to do the work, so results do not depend on timing.
#include "hemoscan/data/loader.hpp"
#include "hemoscan/io/sequences.hpp"

#include <opencv2/imgcodecs.hpp>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <new>
#include <thread>
#include <unordered_map>

#include "data/detail.hpp"
#include "hemoscan/error.hpp"
#include "hemoscan/io/image2d.hpp"
#include "hemoscan/io/load.hpp"
#include "hemoscan/log.hpp"
#include "hemoscan/preprocess/volume.hpp"

namespace hemoscan {

namespace {

std::string size_text(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

// A label map: one channel, 8 bit, the size of its image.
cv::Mat read_mask(const std::filesystem::path& path, cv::Size image_size, const std::string& image_file) {
    // The image reader's checks (format, size claimed against the read limits), without its conversions.
    cv::Mat mask = read_image_2d_pixels(path);
    if (mask.channels() > 1) cv::extractChannel(mask, mask, 0);
    if (mask.depth() != CV_8U) mask.convertTo(mask, CV_8U);
    if (mask.size() != image_size) {
        throw InputError(path.string() + ": mask is " + size_text(mask.cols, mask.rows) + " but its image " +
                         image_file + " is " + size_text(image_size.width, image_size.height));
    }
    return mask;
}

}  // namespace

Sample load_sample(const Dataset& dataset, size_t index, const PreprocessOptions& preprocess_options,
                   ModalityPolicy modality) {
    if (index >= dataset.items.size()) {
        throw UsageError("load_sample: item " + std::to_string(index) + " of a data set of " +
                         std::to_string(dataset.items.size()));
    }
    const DatasetItem& item = dataset.items[index];
    const std::string file = item.path.string();
    try {
        std::error_code ec;
        const bool case_folder = std::filesystem::is_directory(item.path, ec);
        if (case_folder && !preprocess_options.mr) {
            throw InputError(file + ": a folder of MR sequences; train an MR model (`modality` mr, `sequences`)");
        }
        DicomSlice slice = case_folder ? read_sequence_slice(item.path, preprocess_options.sequences.empty()
                                                                            ? case_sequences(item.path)
                                                                            : preprocess_options.sequences,
                                                             modality)
                                       : load_image(item.path, modality);
        cv::Mat mask;
        if (!item.mask.empty()) mask = read_mask(item.mask, slice.pixels.size(), file);
        Sample sample = preprocess(slice, preprocess_options, mask);
        sample.labels = item.labels;
        sample.class_index = item.class_index;
        sample.id = item.id;
        sample.patient = item.patient;
        if (sample.meta.path.empty()) sample.meta = slice.meta;
        if (sample.meta.path.empty()) sample.meta.path = file;
        return sample;
    } catch (const UsageError&) {
        throw;  // a bad option, not this file's fault
    } catch (const std::bad_alloc&) {
        throw;
    } catch (const InputError& e) {
        if (std::string(e.what()).find(file) != std::string::npos) throw;
        throw InputError(file + ": " + e.what());
    } catch (const std::exception& e) {
        // OpenCV and friends: whatever broke while decoding this file is reported against it.
        throw InputError(file + ": " + e.what());
    }
}

namespace {

// One batch being assembled.
struct Slot {
    Batch batch;
    size_t expected = 0;  // samples in this batch
    size_t done = 0;      // samples finished (written or failed)
    bool allocated = false;
    std::exception_ptr error;  // the failure of the earliest failed sample, so the error is deterministic
    size_t error_position = std::numeric_limits<size_t>::max();
};

// One claimed sample.
struct Task {
    size_t position = 0;  // position in the epoch's order
    size_t local = 0;     // index into the loader's indices
    size_t item = 0;      // dataset item index
    size_t batch = 0;
    size_t slot_index = 0;  // index within the batch
    std::uint64_t epoch = 0;
};

}  // namespace

struct DataLoader::State {
    State(const Dataset& d, const std::vector<size_t>& idx, const PreprocessOptions& p, const LoaderOptions& o)
        : dataset(d), indices(idx), preprocess(p), options(o) {}

    const Dataset& dataset;
    const std::vector<size_t>& indices;
    const PreprocessOptions& preprocess;
    const LoaderOptions& options;
    size_t batch_size = 1;
    size_t window = 1;  // batches that may be in preparation at once
    bool has_masks = false;
    bool augmenting = false;

    std::vector<std::thread> threads;
    std::mutex mutex;
    std::condition_variable work_cv;  // workers: a task may be claimable, or stop
    std::condition_variable done_cv;  // consumer: a batch completed, or no sample in flight
    bool stop = false;

    // The current epoch (all guarded by mutex).
    bool started = false;
    bool aborted = false;  // no more claims: after an error, or while restarting
    std::uint64_t epoch = 0;
    std::vector<size_t> order;  // epoch order, as indices into `indices`
    size_t total = 0;           // samples in this epoch (drop_last trims)
    size_t next_position = 0;   // next sample to claim
    size_t consumed = 0;        // batches handed out
    size_t active = 0;          // samples in processing
    std::vector<Slot> slots;

    // Decoded samples by index into `indices` (after preprocessing, before augmentation).
    bool caching = false;
    std::vector<std::shared_ptr<const Sample>> cache;
    size_t cache_bytes = 0;
    std::unordered_map<size_t, size_t> local_of;  // dataset item -> index into `indices`

    // Slice context: the study of every item and its place there.
    std::vector<std::vector<size_t>> studies;
    std::unordered_map<size_t, std::pair<size_t, size_t>> place;  // item -> (study, k)

    bool claimable() const {
        return started && !aborted && !stop && next_position < total &&
               next_position / batch_size < consumed + window;
    }

    Task claim() {
        Task t;
        t.position = next_position++;
        t.local = order[t.position];
        t.item = indices[t.local];
        t.batch = t.position / batch_size;
        t.slot_index = t.position % batch_size;
        t.epoch = epoch;
        ++active;
        return t;
    }

    void reset_epoch(std::uint64_t e) {
        epoch = e;
        order.resize(indices.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        if (options.shuffle) {
            data_detail::seeded_shuffle(order, options.seed + data_detail::splitmix64(e ^ 0x5EEDF00DULL));
        }
        if (options.shard_count > 1) order = shard_order(order, options.shard_rank, options.shard_count, options.drop_last);
        const size_t n = order.size();
        const size_t batches = options.drop_last ? n / batch_size : (n + batch_size - 1) / batch_size;
        total = std::min(n, batches * batch_size);
        slots.clear();
        slots.resize(batches);
        for (size_t b = 0; b < batches; ++b) slots[b].expected = std::min(batch_size, total - b * batch_size);
        next_position = 0;
        consumed = 0;
        started = true;
        aborted = false;
    }

    // Decodes (or takes from the cache), augments and writes one sample into its batch; any failure
    // is kept in the slot for next() to throw. Called without the lock held.
    void run(const Task& t) {
        std::exception_ptr error;
        try {
            write(t, sample_for(t));
        } catch (...) {
            error = std::current_exception();
        }
        std::lock_guard<std::mutex> lock(mutex);
        Slot& slot = slots[t.batch];
        if (error && t.position < slot.error_position) {
            slot.error = error;
            slot.error_position = t.position;
        }
        ++slot.done;
        --active;
        if (slot.done == slot.expected || active == 0) done_cv.notify_all();
    }

    // Dataset item `item` preprocessed (from the cache when it holds it); items outside the loader's
    // selection (a neighbour slice) are decoded each time.
    std::shared_ptr<const Sample> decoded(size_t item) {
        const auto local = local_of.find(item);
        const bool cacheable = caching && local != local_of.end();
        if (cacheable) {
            std::lock_guard<std::mutex> lock(mutex);
            if (cache[local->second]) return cache[local->second];
        }
        auto sample = std::make_shared<const Sample>(load_sample(dataset, item, preprocess, options.modality));
        if (cacheable) {
            const size_t bytes = sample->image.total() * sample->image.elemSize() +
                                 sample->mask.total() * sample->mask.elemSize();
            std::lock_guard<std::mutex> lock(mutex);
            if (cache_bytes + bytes <= options.cache_max_bytes) {
                cache[local->second] = sample;
                cache_bytes += bytes;
            }
        }
        return sample;
    }

    // The item with its study neighbours as channels (LoaderOptions::context), else the item alone.
    std::shared_ptr<const Sample> with_context(size_t item) {
        std::shared_ptr<const Sample> centre = decoded(item);
        if (options.context <= 0) return centre;
        const auto [study, k] = place.at(item);
        const std::vector<size_t>& slices = studies[study];
        std::vector<cv::Mat> parts;
        for (size_t at : context_indices(slices.size(), k, options.context)) {
            const size_t neighbour = slices[at];
            if (neighbour == item) {
                parts.push_back(centre->image);
                continue;
            }
            const auto other = decoded(neighbour);
            if (other->image.size() != centre->image.size() || other->image.type() != centre->image.type()) {
                throw InputError(dataset.items[neighbour].path.string() + ": slice context: preprocessed to " +
                                 std::to_string(other->image.cols) + "x" + std::to_string(other->image.rows) +
                                 ", its neighbour " + dataset.items[item].path.string() + " to " +
                                 std::to_string(centre->image.cols) + "x" + std::to_string(centre->image.rows));
            }
            parts.push_back(other->image);
        }
        auto stacked = std::make_shared<Sample>(*centre);
        cv::merge(parts, stacked->image);
        return stacked;
    }

    // The sample to write: the decoded one, or an augmented deep copy of it (the cache stays clean).
    std::shared_ptr<const Sample> sample_for(const Task& t) {
        std::shared_ptr<const Sample> base = with_context(t.item);
        if (!augmenting) return base;
        auto copy = std::make_shared<Sample>(*base);
        copy->image = base->image.clone();
        copy->mask = base->mask.clone();
        // The lesion goes in first, so that the spatial augmentation moves it with the head.
        if (options.lesion.probability > 0 &&
            insert_lesion(copy->image, options.lesion, mix_seed(options.seed ^ 0x6c6573696f6eULL, t.epoch, t.item))) {
            for (int k : options.lesion_labels) copy->labels.at(static_cast<size_t>(k)) = 1.f;
        }
        augment(*copy, options.augment_options, mix_seed(options.seed, t.epoch, t.item));
        return copy;
    }

    void write(const Task& t, const std::shared_ptr<const Sample>& sample_ptr) {
        const Sample& s = *sample_ptr;
        const DatasetItem& item = dataset.items[t.item];
        const std::string file = item.path.string();
        if (s.image.empty() || s.image.dims != 2) throw InputError(file + ": preprocessing gave an empty image");
        const int c = s.image.channels(), h = s.image.rows, w = s.image.cols;
        const size_t labels = dataset.label_names.size();
        if (item.labels.size() != labels) {
            throw InputError(file + ": " + std::to_string(item.labels.size()) + " labels, expected " +
                             std::to_string(labels));
        }
        if (!s.mask.empty() && (s.mask.rows != h || s.mask.cols != w || s.mask.type() != CV_8UC1)) {
            throw InputError(file + ": mask does not match its image after preprocessing");
        }
        Batch* batch = nullptr;
        {
            std::lock_guard<std::mutex> lock(mutex);
            Slot& slot = slots[t.batch];
            Batch& b = slot.batch;
            if (!slot.allocated) {
                b.n = static_cast<int>(slot.expected);
                b.c = c;
                b.h = h;
                b.w = w;
                b.num_labels = static_cast<int>(labels);
                b.images.assign(slot.expected * size_t(c) * h * w, 0.f);
                b.labels.assign(slot.expected * labels, 0.f);
                b.indices.assign(slot.expected, 0);
                if (has_masks) b.masks.assign(slot.expected * size_t(h) * w, 0);
                slot.allocated = true;
            } else if (b.c != c || b.h != h || b.w != w) {
                throw InputError(file + ": sample is " + std::to_string(c) + " x " + size_text(w, h) +
                                 ", others in its batch are " + std::to_string(b.c) + " x " + size_text(b.w, b.h));
            }
            batch = &b;
        }
        // The buffers are sized once above; each sample writes only its own part, without the lock.
        const size_t plane = size_t(h) * w;
        float* dst = batch->images.data() + t.slot_index * size_t(c) * plane;
        cv::Mat image = s.image;
        if (image.depth() != CV_32F) image.convertTo(image, CV_32F);
        if (c == 1) {
            cv::Mat out(h, w, CV_32FC1, dst);
            image.copyTo(out);
        } else {
            std::vector<cv::Mat> planes;
            for (int k = 0; k < c; ++k) planes.emplace_back(h, w, CV_32FC1, dst + size_t(k) * plane);
            cv::split(image, planes.data());  // HWC -> CHW straight into the batch
        }
        // The sample's labels (load_sample copies the item's; a painted lesion may have changed them).
        const std::vector<float>& y = s.labels.size() == labels ? s.labels : item.labels;
        std::copy(y.begin(), y.end(), batch->labels.begin() + t.slot_index * labels);
        batch->indices[t.slot_index] = t.item;
        if (has_masks && !s.mask.empty()) {
            cv::Mat out(h, w, CV_8UC1, batch->masks.data() + t.slot_index * plane);
            s.mask.copyTo(out);
        }
    }

    void worker_loop() {
        std::unique_lock<std::mutex> lock(mutex);
        for (;;) {
            work_cv.wait(lock, [&] { return stop || claimable(); });
            if (stop) return;
            const Task t = claim();
            lock.unlock();
            run(t);
            lock.lock();
        }
    }

    void shutdown() {
        {
            std::lock_guard<std::mutex> lock(mutex);
            stop = true;
        }
        work_cv.notify_all();
        for (std::thread& t : threads) {
            if (t.joinable()) t.join();
        }
        threads.clear();
    }
};

DataLoader::DataLoader(const Dataset& dataset, std::vector<size_t> indices, PreprocessOptions preprocess,
                       LoaderOptions options)
    : dataset_(dataset), indices_(std::move(indices)), preprocess_(std::move(preprocess)),
      options_(std::move(options)) {
    if (options_.batch_size < 1) {
        throw UsageError("batch size must be at least 1 (got " + std::to_string(options_.batch_size) + ")");
    }
    if (options_.shard_count < 1 || options_.shard_rank < 0 || options_.shard_rank >= options_.shard_count) {
        throw UsageError("data loader: shard " + std::to_string(options_.shard_rank) + " of " +
                         std::to_string(options_.shard_count) + " does not exist");
    }
    for (size_t i : indices_) {
        if (i >= dataset_.items.size()) {
            throw UsageError("data loader: item index " + std::to_string(i) + " out of range (data set of " +
                             std::to_string(dataset_.items.size()) + ")");
        }
    }
    state_ = std::make_unique<State>(dataset_, indices_, preprocess_, options_);
    State& st = *state_;
    st.batch_size = static_cast<size_t>(options_.batch_size);
    st.window = static_cast<size_t>(std::max(1, options_.prefetch));
    st.augmenting = options_.augment && options_.augment_options.enabled;
    for (size_t i : indices_) st.has_masks = st.has_masks || !dataset_.items[i].mask.empty();

    // Cache when the whole selection fits, estimated from the output size (checked again per sample).
    const auto& r = preprocess_.resize;
    const size_t per_sample = r.width > 0 && r.height > 0
                                  ? size_t(r.width) * r.height * (sizeof(float) * std::max(1, preprocess_.channels()) +
                                                                  (st.has_masks ? 1 : 0))
                                  : 0;
    st.caching = options_.cache_max_bytes > 0 && per_sample * indices_.size() <= options_.cache_max_bytes;
    if (st.caching) st.cache.resize(indices_.size());
    for (size_t local = 0; local < indices_.size(); ++local) st.local_of.emplace(indices_[local], local);
    if (options_.context > 0) {
        if (!dataset_.ordered) {
            throw UsageError("`context` needs slices in study order: a manifest with a \"slice\" column, or the RSNA layout");
        }
        st.studies = dataset_.studies();
        for (size_t s = 0; s < st.studies.size(); ++s) {
            for (size_t k = 0; k < st.studies[s].size(); ++k) st.place.emplace(st.studies[s][k], std::make_pair(s, k));
        }
    }
    logger().debug("loader: {} samples, {} batches, {} workers, cache {}", indices_.size(), batches_per_epoch(),
                   std::max(0, options_.workers), st.caching ? "on" : "off");

    try {
        for (int k = 0; k < options_.workers; ++k) st.threads.emplace_back([&st] { st.worker_loop(); });
    } catch (...) {
        st.shutdown();
        throw;
    }
}

DataLoader::~DataLoader() {
    if (state_) state_->shutdown();
}

void DataLoader::start_epoch(std::uint64_t epoch) {
    State& st = *state_;
    std::unique_lock<std::mutex> lock(st.mutex);
    // Stop claiming and let samples in flight land in the old slots before they are replaced.
    st.aborted = true;
    st.done_cv.wait(lock, [&] { return st.active == 0; });
    st.reset_epoch(epoch);
    lock.unlock();
    st.work_cv.notify_all();
}

bool DataLoader::next(Batch& batch) {
    State& st = *state_;
    std::unique_lock<std::mutex> lock(st.mutex);
    if (!st.started) {
        // next() without start_epoch(): epoch 0.
        st.reset_epoch(0);
        st.work_cv.notify_all();
    }
    if (st.aborted || st.consumed >= st.slots.size()) return false;
    const size_t b = st.consumed;
    while (st.slots[b].done < st.slots[b].expected) {
        if (st.claimable() && st.next_position / st.batch_size == b) {
            // Help with the batch we are waiting for (the only way samples get made without workers).
            const Task t = st.claim();
            lock.unlock();
            st.run(t);
            lock.lock();
            continue;
        }
        st.done_cv.wait(lock);
    }
    Slot slot = std::move(st.slots[b]);
    st.slots[b] = Slot{};
    ++st.consumed;
    if (slot.error) {
        // The epoch ends here: next() returns false until start_epoch().
        st.aborted = true;
        lock.unlock();
        std::rethrow_exception(slot.error);
    }
    batch = std::move(slot.batch);
    lock.unlock();
    st.work_cv.notify_all();  // the window moved on
    return true;
}

std::vector<size_t> shard_order(const std::vector<size_t>& order, int rank, int count, bool drop_tail) {
    if (count < 1 || rank < 0 || rank >= count) throw UsageError("shard_order: rank must be in 0..count-1");
    const size_t n = order.size(), c = static_cast<size_t>(count);
    const size_t total = n == 0 ? 0 : drop_tail ? n / c * c : (n + c - 1) / c * c;
    std::vector<size_t> mine;
    for (size_t i = static_cast<size_t>(rank); i < total; i += c) mine.push_back(order[i % n]);
    return mine;
}

size_t DataLoader::batches_per_epoch() const {
    const size_t all = indices_.size(), c = static_cast<size_t>(std::max(1, options_.shard_count));
    const size_t n = c == 1 ? all : options_.drop_last ? all / c : (all + c - 1) / c;
    const size_t bs = static_cast<size_t>(std::max(1, options_.batch_size));
    return options_.drop_last ? n / bs : (n + bs - 1) / bs;
}

}  // namespace hemoscan
