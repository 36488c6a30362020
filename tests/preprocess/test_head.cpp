#include <gtest/gtest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgproc.hpp>

#include "hemoscan/error.hpp"
#include "hemoscan/preprocess/preprocess.hpp"

using namespace hemoscan;

namespace {

// A synthetic head: an ellipse (0.8) with a dark ventricle (0.1) inside, a letter (1.0) inside the
// head's bounding box but outside the head, and a second letter in the far corner.
struct Scene {
    cv::Mat image = cv::Mat(96, 96, CV_32FC1, cv::Scalar(0));
    cv::Mat head = cv::Mat(96, 96, CV_8UC1, cv::Scalar(0));  // expected head component
    cv::Rect letter{13, 21, 5, 5};
    cv::Rect corner_letter{88, 2, 6, 7};
    cv::Rect ventricle_box{44, 48, 9, 5};
    Scene() {
        cv::ellipse(image, cv::Point(48, 50), cv::Size(36, 30), 0, 0, 360, cv::Scalar(0.8), cv::FILLED);
        cv::ellipse(head, cv::Point(48, 50), cv::Size(36, 30), 0, 0, 360, cv::Scalar(255), cv::FILLED);
        cv::ellipse(image, cv::Point(48, 50), cv::Size(8, 5), 0, 0, 360, cv::Scalar(0.1), cv::FILLED);
        image(letter).setTo(1.0);
        image(corner_letter).setTo(1.0);
    }
};

cv::Rect grow(const cv::Rect& r, int m, cv::Size size) {
    return cv::Rect(r.x - m, r.y - m, r.width + 2 * m, r.height + 2 * m) & cv::Rect(cv::Point(0, 0), size);
}

}  // namespace

TEST(Head, FindsLargestComponentWithHolesFilled) {
    Scene s;
    cv::Mat head;
    const cv::Rect box = find_head(s.image, 0.3f, 4, &head);
    EXPECT_EQ(box, grow(cv::boundingRect(s.head), 4, s.image.size()));
    ASSERT_EQ(head.type(), CV_8UC1);
    // Exactly the ellipse: the ventricle (a hole) is part of the head, the letters are not.
    EXPECT_EQ(cv::countNonZero(head != s.head), 0);
    EXPECT_EQ(cv::countNonZero(head(s.letter)), 0);
    EXPECT_EQ(cv::countNonZero(head(s.ventricle_box)), s.ventricle_box.area());
}

TEST(Head, CropRemovesLettersAndCropsMaskIdentically) {
    Scene s;
    Sample sample;
    // Two channels: the head is found on channel 0, both are cleared outside it.
    cv::merge(std::vector<cv::Mat>{s.image, s.image * 0.5}, sample.image);
    sample.mask = cv::Mat(96, 96, CV_8UC1, cv::Scalar(0));
    sample.mask(cv::Rect(40, 55, 10, 8)).setTo(1);
    sample.mask(cv::Rect(20, 30, 3, 3)).setTo(2);
    const cv::Mat original_mask = sample.mask.clone();
    const cv::Mat original_image = sample.image.clone();

    crop_to_head(sample, 0.3f, 0.f, 4);
    const cv::Rect box = grow(cv::boundingRect(s.head), 4, s.image.size());
    ASSERT_EQ(sample.image.size(), box.size());
    ASSERT_EQ(sample.image.type(), CV_32FC2);
    // The box covers the head.
    EXPECT_EQ((box & cv::boundingRect(s.head)), cv::boundingRect(s.head));
    // The letter inside the box is gone, on both channels.
    const cv::Rect letter_in_crop(s.letter.tl() - box.tl(), s.letter.size());
    ASSERT_EQ(letter_in_crop & cv::Rect(cv::Point(0, 0), box.size()), letter_in_crop);
    std::vector<cv::Mat> channels;
    cv::split(sample.image, channels);
    for (const auto& c : channels) EXPECT_EQ(cv::countNonZero(c(letter_in_crop)), 0);
    // Inside the head nothing changed (ventricle included).
    cv::Mat expected = original_image(box).clone();
    expected.setTo(cv::Scalar::all(0), s.head(box) == 0);
    EXPECT_EQ(cv::norm(sample.image, expected, cv::NORM_INF), 0.0);
    EXPECT_FLOAT_EQ(channels[0].at<float>(50 - box.y, 48 - box.x), 0.1f);
    EXPECT_FLOAT_EQ(channels[1].at<float>(50 - box.y, 30 - box.x), 0.4f);
    // The mask is cut to the same box, values untouched.
    ASSERT_EQ(sample.mask.size(), box.size());
    EXPECT_EQ(cv::countNonZero(sample.mask != original_mask(box)), 0);
    EXPECT_EQ(cv::countNonZero(sample.mask == 1), 80);
    EXPECT_EQ(cv::countNonZero(sample.mask == 2), 9);
}

TEST(Head, ThinBridgeToALetterIsBroken) {
    cv::Mat image(96, 96, CV_32FC1, cv::Scalar(0));
    cv::ellipse(image, cv::Point(52, 50), cv::Size(36, 30), 0, 0, 360, cv::Scalar(0.8), cv::FILLED);
    // The letter ends 3 pixels left of the head (whose edge is at x = 17 there), joined by a 1-pixel bridge.
    const cv::Rect letter(6, 40, 8, 8);
    image(letter).setTo(1.0);
    cv::line(image, cv::Point(13, 43), cv::Point(24, 43), cv::Scalar(0.9));
    cv::Mat head;
    const cv::Rect box = find_head(image, 0.3f, 4, &head);
    EXPECT_EQ(cv::countNonZero(head(letter)), 0);
    EXPECT_GT(cv::countNonZero(head), 3000);

    Sample sample;
    sample.image = image.clone();
    crop_to_head(sample, 0.3f, -1.f, 4);
    ASSERT_EQ(sample.image.size(), box.size());
    // Whatever part of the letter is inside the box is now background.
    const cv::Rect letter_in_crop = cv::Rect(letter.tl() - box.tl(), letter.size()) & cv::Rect(cv::Point(), box.size());
    ASSERT_FALSE(letter_in_crop.empty());
    EXPECT_EQ(cv::countNonZero(sample.image(letter_in_crop) != -1.f), 0);
}

TEST(Head, NoForegroundKeepsEverything) {
    cv::Mat image(20, 30, CV_32FC1, cv::Scalar(0.01));
    cv::Mat head;
    EXPECT_EQ(find_head(image, 0.5f, 4, &head), cv::Rect(0, 0, 30, 20));
    EXPECT_EQ(cv::countNonZero(head), 600);
    Sample sample;
    sample.image = image.clone();
    crop_to_head(sample, 0.5f);
    EXPECT_EQ(cv::norm(sample.image, image, cv::NORM_INF), 0.0);
}

TEST(Head, MaskOfAnotherSizeIsAnInputError) {
    Sample sample;
    sample.meta.path = "scan/slice7.png";
    sample.image = Scene().image;
    sample.mask = cv::Mat(10, 10, CV_8UC1, cv::Scalar(0));
    try {
        crop_to_head(sample, 0.3f);
        FAIL();
    } catch (const InputError& e) {
        EXPECT_NE(std::string(e.what()).find("scan/slice7.png"), std::string::npos);
    }
}
