// render_fields: library messages name option fields in backticks; front ends write them their way.
#include <gtest/gtest.h>

#include "hemoscan/util/strings.hpp"

using namespace hemoscan;

TEST(Strings, RenderFieldsRewritesEveryBacktickedField) {
    const auto flag = [](const std::string& f) { return "--" + f; };
    EXPECT_EQ(render_fields("`pretrain_epochs` needs `model` unet-ae", flag), "--pretrain_epochs needs --model unet-ae");
    EXPECT_EQ(render_fields("no fields here", flag), "no fields here");
    // Not a field name (spaces, capitals) or an unclosed backtick: kept as written.
    EXPECT_EQ(render_fields("see `Not A Field` and `x", flag), "see `Not A Field` and `x");
    EXPECT_EQ(render_fields("`a`,`b2`", [](const std::string& f) { return "<" + f + ">"; }), "<a>,<b2>");
}
