#include "hemoscan/report/html.hpp"

#include <opencv2/imgcodecs.hpp>

#include <ctime>

#include "hemoscan/util/fs.hpp"
#include "hemoscan/version.hpp"

namespace hemoscan {

std::string html_escape(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    for (char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default: out += c;
        }
    }
    return out;
}

std::string base64_encode(const std::string& bytes) {
    static const char* table = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(bytes[i]) << 16) | (static_cast<unsigned char>(bytes[i + 1]) << 8) |
                     static_cast<unsigned char>(bytes[i + 2]);
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += table[(v >> 6) & 63];
        out += table[v & 63];
    }
    if (i < bytes.size()) {
        unsigned v = static_cast<unsigned char>(bytes[i]) << 16;
        if (i + 1 < bytes.size()) v |= static_cast<unsigned char>(bytes[i + 1]) << 8;
        out += table[(v >> 18) & 63];
        out += table[(v >> 12) & 63];
        out += i + 1 < bytes.size() ? table[(v >> 6) & 63] : '=';
        out += '=';
    }
    return out;
}

HtmlReport::HtmlReport(std::string title, std::string subtitle)
    : title_(std::move(title)), subtitle_(std::move(subtitle)) {}

void HtmlReport::heading(const std::string& text) { body_ += "<h2>" + html_escape(text) + "</h2>\n"; }
void HtmlReport::paragraph(const std::string& text) { body_ += "<p>" + html_escape(text) + "</p>\n"; }
void HtmlReport::note(const std::string& text) { body_ += "<p class=\"note\">" + html_escape(text) + "</p>\n"; }

void HtmlReport::cards(const std::vector<Card>& cards) {
    body_ += "<div class=\"cards\">\n";
    for (const auto& c : cards) {
        body_ += "<div class=\"card\"><div class=\"label\">" + html_escape(c.label) + "</div><div class=\"value\">" +
                 html_escape(c.value) + "</div><div class=\"detail\">" + html_escape(c.detail) + "</div></div>\n";
    }
    body_ += "</div>\n";
}

void HtmlReport::table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
                       int highlight_column) {
    body_ += "<div class=\"tablewrap\"><table>\n<thead><tr>";
    for (const auto& h : header) body_ += "<th>" + html_escape(h) + "</th>";
    body_ += "</tr></thead>\n<tbody>\n";
    for (const auto& r : rows) {
        body_ += "<tr>";
        for (size_t c = 0; c < r.size(); ++c) {
            std::string cls;
            if (static_cast<int>(c) == highlight_column) cls = r[c] == "YES" ? " class=\"pos\"" : " class=\"neg\"";
            body_ += "<td" + cls + ">" + html_escape(r[c]) + "</td>";
        }
        body_ += "</tr>\n";
    }
    body_ += "</tbody></table></div>\n";
}

void HtmlReport::figures(const std::vector<Figure>& figures, int max_width_px) {
    body_ += "<div class=\"figures\">\n";
    for (const auto& f : figures) {
        if (!fs::exists(f.file)) {
            body_ += "<p class=\"note\">missing figure: " + html_escape(f.file.string()) + "</p>\n";
            continue;
        }
        body_ += "<figure style=\"max-width:" + std::to_string(max_width_px) + "px\"><img alt=\"" +
                 html_escape(f.caption) + "\" src=\"data:image/png;base64," + base64_encode(read_file(f.file)) +
                 "\"><figcaption>" + html_escape(f.caption) + "</figcaption></figure>\n";
    }
    body_ += "</div>\n";
}

void HtmlReport::figure_images(const std::vector<std::pair<cv::Mat, std::string>>& images, int max_width_px) {
    body_ += "<div class=\"figures\">\n";
    for (const auto& [img, caption] : images) {
        std::vector<uchar> png;
        cv::imencode(".png", img, png);
        body_ += "<figure style=\"max-width:" + std::to_string(max_width_px) + "px\"><img alt=\"" +
                 html_escape(caption) + "\" src=\"data:image/png;base64," +
                 base64_encode(std::string(png.begin(), png.end())) + "\"><figcaption>" + html_escape(caption) +
                 "</figcaption></figure>\n";
    }
    body_ += "</div>\n";
}

std::string HtmlReport::html() const {
    static const char* css = R"(
:root { --ink:#1f2933; --muted:#616e7c; --line:#e4e7eb; --accent:#2f6fb3; --bg:#f7f9fb; --pos:#c0392b; --neg:#2e7d32; }
* { box-sizing: border-box; }
body { margin:0; font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--ink); background:var(--bg); line-height:1.5; }
header { background:#16324f; color:#fff; padding:28px 40px; }
header h1 { margin:0; font-size:26px; font-weight:600; letter-spacing:.2px; }
header .sub { margin-top:6px; color:#c9d6e3; font-size:14px; }
main { max-width:1180px; margin:0 auto; padding:24px 40px 60px; }
h2 { font-size:19px; margin:34px 0 12px; padding-bottom:6px; border-bottom:2px solid var(--line); }
p { margin:8px 0; } .note { color:var(--muted); font-size:13px; }
.cards { display:flex; flex-wrap:wrap; gap:14px; margin:14px 0; }
.card { background:#fff; border:1px solid var(--line); border-radius:10px; padding:14px 18px; min-width:170px;
        box-shadow:0 1px 2px rgba(0,0,0,.04); }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.6px; }
.card .value { font-size:26px; font-weight:600; color:var(--accent); margin-top:2px; }
.card .detail { color:var(--muted); font-size:12px; }
.tablewrap { overflow-x:auto; background:#fff; border:1px solid var(--line); border-radius:10px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { padding:7px 12px; text-align:left; border-bottom:1px solid var(--line); white-space:nowrap; }
th { background:#eef2f6; font-weight:600; position:sticky; top:0; }
tbody tr:hover { background:#f3f7fb; }
td.pos { color:var(--pos); font-weight:600; } td.neg { color:var(--neg); }
.figures { display:flex; flex-wrap:wrap; gap:16px; margin:12px 0; }
figure { margin:0; background:#fff; border:1px solid var(--line); border-radius:10px; padding:8px; }
figure img { width:100%; height:auto; display:block; border-radius:6px; }
figcaption { font-size:12px; color:var(--muted); margin-top:6px; }
footer { color:var(--muted); font-size:12px; margin-top:40px; }
)";
    std::time_t now = std::time(nullptr);
    char stamp[64];
    std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
    return std::string("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n") +
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>" + html_escape(title_) +
           "</title>\n<style>" + css + "</style>\n</head>\n<body>\n<header><h1>" + html_escape(title_) +
           "</h1><div class=\"sub\">" + html_escape(subtitle_) + "</div></header>\n<main>\n" + body_ +
           "<footer>Generated by hemoscan " + kVersion + " on " + stamp +
           ". Research software: not for clinical decisions.</footer>\n</main>\n</body>\n</html>\n";
}

void HtmlReport::save(const fs::path& path) const { write_file_atomic(path, html()); }

}  // namespace hemoscan
