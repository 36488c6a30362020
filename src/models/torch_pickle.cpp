// PyTorch's torch.save files (models/pretrained.hpp, read_torch_state_dict): a zip archive holding
// `<name>/data.pkl` (a pickle, protocol 2) and one `<name>/data/<key>` entry per tensor storage.
// LibTorch's own torch::pickle_load stops at collections.OrderedDict, which is what state_dict()
// returns and what torchvision publishes, so this reads the small subset of pickle that torch.save
// writes for dicts of tensors: dicts, lists, tuples, strings, numbers, and the globals
// OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter and torch.*Storage.
#include <cstdio>
#include <cstring>
#include <memory>
#include <variant>

#include "hemoscan/error.hpp"
#include "hemoscan/io/archive.hpp"
#include "hemoscan/models/pretrained.hpp"
#include "hemoscan/util/fs.hpp"

namespace hemoscan {

namespace {

struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Global {
    std::string module, name;
};
struct StorageRef {
    torch::ScalarType type;
    std::string key;
};
struct Value {
    enum Kind { None, Bool, Int, Float, Str, Tuple, List, Dict, GlobalRef, Storage, Tensor, Mark } kind = None;
    std::int64_t i = 0;
    double f = 0;
    std::string s;
    std::vector<ValuePtr> items;                         // tuple, list
    std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // dict, in insertion order
    Global global;
    StorageRef storage;
    torch::Tensor tensor;
};

std::string fmt_hex(unsigned v) {
    char b[8];
    std::snprintf(b, sizeof b, "%02x", v);
    return b;
}

ValuePtr make(Value::Kind k) {
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
}

torch::ScalarType storage_type(const std::string& name, const std::string& where) {
    static const std::vector<std::pair<const char*, torch::ScalarType>> types = {
        {"FloatStorage", torch::kFloat32}, {"DoubleStorage", torch::kFloat64}, {"HalfStorage", torch::kFloat16},
        {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kInt64}, {"IntStorage", torch::kInt32},
        {"ShortStorage", torch::kInt16}, {"CharStorage", torch::kInt8}, {"ByteStorage", torch::kUInt8},
        {"BoolStorage", torch::kBool}};
    for (const auto& [n, t] : types) {
        if (name == n) return t;
    }
    throw InputError(where + ": unsupported tensor storage torch." + name);
}

class Unpickler {
public:
    Unpickler(const std::string& data, const std::map<std::string, std::string>& storages, std::string where)
        : d_(data), storages_(storages), where_(std::move(where)) {}

    ValuePtr run() {
        while (pos_ < d_.size()) {
            const unsigned char op = byte();
            if (op == '.') return pop();  // STOP
            step(op);
        }
        fail("ends without STOP");
    }

private:
    [[noreturn]] void fail(const std::string& what) const { throw InputError(where_ + ": " + what); }
    unsigned char byte() {
        if (pos_ >= d_.size()) fail("truncated pickle");
        return static_cast<unsigned char>(d_[pos_++]);
    }
    std::uint64_t le(int n) {
        std::uint64_t v = 0;
        for (int k = 0; k < n; ++k) v |= static_cast<std::uint64_t>(byte()) << (8 * k);
        return v;
    }
    std::string bytes(size_t n) {
        if (pos_ + n > d_.size()) fail("truncated pickle");
        std::string s = d_.substr(pos_, n);
        pos_ += n;
        return s;
    }
    std::string line() {
        const size_t end = d_.find('\n', pos_);
        if (end == std::string::npos) fail("truncated pickle");
        std::string s = d_.substr(pos_, end - pos_);
        pos_ = end + 1;
        return s;
    }
    ValuePtr pop() {
        if (stack_.empty()) fail("pickle stack underflow");
        ValuePtr v = stack_.back();
        stack_.pop_back();
        return v;
    }
    std::vector<ValuePtr> pop_mark() {
        std::vector<ValuePtr> items;
        while (true) {
            ValuePtr v = pop();
            if (v->kind == Value::Mark) break;
            items.insert(items.begin(), v);
        }
        return items;
    }
    void push(ValuePtr v) { stack_.push_back(std::move(v)); }
    ValuePtr integer(std::int64_t i) {
        auto v = make(Value::Int);
        v->i = i;
        return v;
    }
    ValuePtr tuple(std::vector<ValuePtr> items) {
        auto v = make(Value::Tuple);
        v->items = std::move(items);
        return v;
    }
    void step(unsigned char op);
    ValuePtr reduce(const ValuePtr& callable, const ValuePtr& args);
    ValuePtr persistent(const ValuePtr& pid);

    const std::string& d_;
    const std::map<std::string, std::string>& storages_;
    std::string where_;
    size_t pos_ = 0;
    std::vector<ValuePtr> stack_;
    std::map<std::uint64_t, ValuePtr> memo_;
};

void Unpickler::step(unsigned char op) {
    switch (op) {
        case 0x80: byte(); break;  // PROTO
        case '(': push(make(Value::Mark)); break;
        case ')': push(tuple({})); break;
        case '}': push(make(Value::Dict)); break;
        case ']': push(make(Value::List)); break;
        case 'N': push(make(Value::None)); break;
        case 0x88: case 0x89: {
            auto v = make(Value::Bool);
            v->i = op == 0x88;
            push(v);
            break;
        }
        case 'K': push(integer(byte())); break;
        case 'M': push(integer(static_cast<std::int64_t>(le(2)))); break;
        case 'J': push(integer(static_cast<std::int32_t>(le(4)))); break;
        case 0x8a: {  // LONG1: little-endian two's complement
            const int n = byte();
            std::uint64_t v = le(n);
            if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~std::uint64_t(0) << (8 * n);
            push(integer(static_cast<std::int64_t>(v)));
            break;
        }
        case 'G': {  // BINFLOAT, big-endian
            std::uint64_t bits = 0;
            for (int k = 0; k < 8; ++k) bits = (bits << 8) | byte();
            auto v = make(Value::Float);
            std::memcpy(&v->f, &bits, 8);
            push(v);
            break;
        }
        case 'X': case 'T': case 'U': case 0x8c: {  // BINUNICODE, BINSTRING, SHORT_BINSTRING, SHORT_BINUNICODE
            auto v = make(Value::Str);
            v->s = bytes(op == 'U' || op == 0x8c ? byte() : static_cast<size_t>(le(4)));
            push(v);
            break;
        }
        case 'c': {  // GLOBAL
            auto v = make(Value::GlobalRef);
            v->global.module = line();
            v->global.name = line();
            push(v);
            break;
        }
        case 'q': memo_[byte()] = stack_.at(stack_.size() - 1); break;  // BINPUT
        case 'r': memo_[le(4)] = stack_.at(stack_.size() - 1); break;   // LONG_BINPUT
        case 'h': case 'j': {                                           // BINGET, LONG_BINGET
            const auto it = memo_.find(op == 'h' ? byte() : le(4));
            if (it == memo_.end()) fail("pickle memo miss");
            push(it->second);
            break;
        }
        case 't': push(tuple(pop_mark())); break;
        case 0x85: { auto a = pop(); push(tuple({a})); break; }
        case 0x86: { auto b = pop(), a = pop(); push(tuple({a, b})); break; }
        case 0x87: { auto c = pop(), b = pop(), a = pop(); push(tuple({a, b, c})); break; }
        case 'a': { auto v = pop(); stack_.at(stack_.size() - 1)->items.push_back(v); break; }
        case 'e': { auto items = pop_mark(); auto& l = stack_.at(stack_.size() - 1)->items; l.insert(l.end(), items.begin(), items.end()); break; }
        case 's': { auto v = pop(), k = pop(); stack_.at(stack_.size() - 1)->entries.push_back({k, v}); break; }
        case 'u': {
            auto items = pop_mark();
            if (items.size() % 2) fail("odd SETITEMS");
            auto& dict = stack_.at(stack_.size() - 1)->entries;
            for (size_t k = 0; k + 1 < items.size(); k += 2) dict.push_back({items[k], items[k + 1]});
            break;
        }
        case 'b': pop(); break;  // BUILD: object state (OrderedDict's _metadata): not needed
        case 'Q': push(persistent(pop())); break;  // BINPERSID
        case 'R': { auto args = pop(), callable = pop(); push(reduce(callable, args)); break; }
        default: fail("unsupported pickle opcode 0x" + fmt_hex(op));
    }
}

ValuePtr Unpickler::persistent(const ValuePtr& pid) {
    // ('storage', torch.<Type>Storage, key, location, numel)
    if (pid->kind != Value::Tuple || pid->items.size() < 3 || pid->items[0]->s != "storage" ||
        pid->items[1]->kind != Value::GlobalRef) {
        fail("unsupported persistent id (not a tensor storage)");
    }
    auto v = make(Value::Storage);
    v->storage.type = storage_type(pid->items[1]->global.name, where_);
    v->storage.key = pid->items[2]->s;
    return v;
}

ValuePtr Unpickler::reduce(const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Value::GlobalRef) fail("REDUCE of a non-global");
    const std::string name = callable->global.module + "." + callable->global.name;
    if (name == "collections.OrderedDict" || name == "builtins.dict") return make(Value::Dict);
    if (name == "torch._utils._rebuild_parameter") return args->items.at(0);
    if (name != "torch._utils._rebuild_tensor_v2") fail("unsupported object " + name);
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks)
    const auto& a = args->items;
    if (a.size() < 4 || a[0]->kind != Value::Storage) fail("unexpected _rebuild_tensor_v2 arguments");
    const auto it = storages_.find(a[0]->storage.key);
    if (it == storages_.end()) fail("tensor storage " + a[0]->storage.key + " is missing from the archive");
    const std::string& raw = it->second;
    const auto type = a[0]->storage.type;
    const size_t element = c10::elementSize(type);
    torch::Tensor storage = torch::empty({static_cast<int64_t>(raw.size() / element)}, torch::TensorOptions().dtype(type));
    std::memcpy(storage.data_ptr(), raw.data(), storage.numel() * element);
    std::vector<int64_t> size, stride;
    for (const auto& s : a[2]->items) size.push_back(s->i);
    for (const auto& s : a[3]->items) stride.push_back(s->i);
    std::int64_t last = a[1]->i;  // the last element the view reaches must lie inside the storage
    for (size_t k = 0; k < size.size(); ++k) last += size[k] > 0 ? (size[k] - 1) * stride.at(k) : 0;
    if (last >= storage.numel() && storage.numel() > 0) fail("a tensor reaches past its storage");
    auto v = make(Value::Tensor);
    v->tensor = storage.as_strided(size, stride, a[1]->i).clone();
    return v;
}

// The dict of tensors in a loaded object: the object itself, or under "state_dict", "model" or
// "model_state_dict" of a training checkpoint.
const Value* tensor_dict(const Value& v) {
    if (v.kind != Value::Dict) return nullptr;
    bool all_tensors = !v.entries.empty();
    for (const auto& [k, x] : v.entries) all_tensors = all_tensors && x->kind == Value::Tensor;
    if (all_tensors) return &v;
    for (const char* key : {"state_dict", "model_state_dict", "model", "net"}) {
        for (const auto& [k, x] : v.entries) {
            if (k->kind == Value::Str && k->s == key) return tensor_dict(*x);
        }
    }
    return nullptr;
}

}  // namespace

StateDict read_torch_state_dict(const std::filesystem::path& file) {
    const std::string name = file.string();
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) throw InputError(name + ": file not found");
    const std::string bytes = read_file(file);
    if (sniff_file_type(bytes, name) != FileType::Zip) {
        throw InputError(name + ": not a zip-format torch.save file (a file saved before PyTorch 1.6, or with "
                         "_use_new_zipfile_serialization=False: save it again with torch.save, or as .safetensors)");
    }
    std::string pickle;
    std::map<std::string, std::string> storages;
    for_each_zip_entry(bytes, name, ZipLimits{}, [&](const std::string& entry, const std::string& data) {
        const size_t slash = entry.find('/');
        const std::string inner = slash == std::string::npos ? entry : entry.substr(slash + 1);
        if (inner == "data.pkl") pickle = data;
        if (inner.rfind("data/", 0) == 0) storages[inner.substr(5)] = data;
    });
    if (pickle.empty()) throw InputError(name + ": a zip file without data.pkl: not a torch.save file");
    const ValuePtr root = Unpickler(pickle, storages, name).run();
    const Value* dict = tensor_dict(*root);
    if (!dict) throw InputError(name + ": holds no dict of tensors (a state_dict, or a checkpoint with \"state_dict\")");
    StateDict out;
    for (const auto& [k, v] : dict->entries) {
        if (k->kind != Value::Str) throw InputError(name + ": a state dict key that is not a string");
        out[k->s] = v->tensor;
    }
    return out;
}

StateDict read_weights(const std::filesystem::path& file) {
    const std::string ext = file.extension().string();
    if (ext == ".safetensors") return read_safetensors(file);
    return read_torch_state_dict(file);
}

}  // namespace hemoscan
