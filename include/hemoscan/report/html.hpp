#pragma once
// A self-contained HTML report: inline CSS, images embedded as base64 data URIs, no external
// requests, so the single file can be mailed or archived and still shows everything.
#include <filesystem>
#include <string>
#include <vector>

#include <opencv2/core.hpp>

namespace hemoscan {

std::string html_escape(const std::string& text);
std::string base64_encode(const std::string& bytes);

class HtmlReport {
public:
    explicit HtmlReport(std::string title, std::string subtitle = "");

    void heading(const std::string& text);
    void paragraph(const std::string& text);  // escaped
    void note(const std::string& text);       // a muted, escaped paragraph
    // Key figures shown as cards: (label, value, detail).
    struct Card {
        std::string label, value, detail;
    };
    void cards(const std::vector<Card>& cards);
    // A table; cells are escaped. `highlight_column` (>= 0) colours cells "YES"/"no".
    void table(const std::vector<std::string>& header, const std::vector<std::vector<std::string>>& rows,
               int highlight_column = -1);
    // Images side by side (wrapping), each with a caption. PNG files are embedded; a missing file
    // is skipped with a note.
    struct Figure {
        std::filesystem::path file;
        std::string caption;
    };
    void figures(const std::vector<Figure>& figures, int max_width_px = 420);
    void figure_images(const std::vector<std::pair<cv::Mat, std::string>>& images, int max_width_px = 260);

    std::string html() const;
    // Writes the report atomically.
    void save(const std::filesystem::path& path) const;

private:
    std::string title_, subtitle_;
    std::string body_;
};

}  // namespace hemoscan
