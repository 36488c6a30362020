#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "hemoscan/report/html.hpp"
#include "hemoscan/util/fs.hpp"
#include "support/test_util.hpp"

using namespace hemoscan;

TEST(Html, Base64KnownVectors) {
    // RFC 4648 test vectors.
    EXPECT_EQ(base64_encode(""), "");
    EXPECT_EQ(base64_encode("f"), "Zg==");
    EXPECT_EQ(base64_encode("fo"), "Zm8=");
    EXPECT_EQ(base64_encode("foo"), "Zm9v");
    EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
    EXPECT_EQ(base64_encode("fooba"), "Zm9vYmE=");
    EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
}

TEST(Html, ReportIsSelfContainedAndEscaped) {
    test::TempDir d;
    cv::Mat img(8, 8, CV_8UC3, cv::Scalar(10, 20, 30));
    cv::imwrite((d / "a.png").string(), img);
    HtmlReport r("Demo <report>", "sub");
    r.heading("Metrics & more");
    r.cards({{"AUC", "0.99", "n=10"}});
    r.table({"study", "any"}, {{"s1", "YES"}, {"s2", "no"}}, 1);
    r.figures({{d / "a.png", "ROC"}, {d / "missing.png", "gone"}});
    r.figure_images({{img, "inline"}});
    r.save(d / "r.html");
    std::string html = read_file(d / "r.html");
    EXPECT_NE(html.find("Demo &lt;report&gt;"), std::string::npos);
    EXPECT_NE(html.find("Metrics &amp; more"), std::string::npos);
    EXPECT_NE(html.find("<td class=\"pos\">YES</td>"), std::string::npos);
    EXPECT_NE(html.find("<td class=\"neg\">no</td>"), std::string::npos);
    EXPECT_NE(html.find("data:image/png;base64," + base64_encode(read_file(d / "a.png"))), std::string::npos);
    EXPECT_NE(html.find("missing figure"), std::string::npos);
    // Nothing is fetched from elsewhere.
    EXPECT_EQ(html.find("http://"), std::string::npos);
    EXPECT_EQ(html.find("https://"), std::string::npos);
}
